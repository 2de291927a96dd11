"""Supervised baselines: source-only (the lower bound), target oracle (the upper bound), and self-training
(retraining on target pseudo-labels, SDCA §6). All three are one loss: multi-level pixel cross-entropy.
Chapter: ``notebooks/source_only.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..losses import multi_level_ce
from ..models.output import SegOutput
from .base import Backward, Batch, Method


@dataclass(frozen=True)
class SupervisedConfig:
    lambda_seg_aux: float = 0.1  # λ_seg: weight of the layer3 head's CE (AdaptSegNet/ADVENT, spec §3.3)


def source_ce_step(model: nn.Module, source: Batch, lambda_aux: float, backward: Backward) -> tuple[Tensor, SegOutput]:
    """Forward the labelled batch, backpropagate CE(main) + λ_aux·CE(aux); returns (detached loss, outputs)."""
    out = model(source.image)
    loss = multi_level_ce(out, source.label, lambda_aux)
    backward(loss)
    return loss.detach(), out


class SourceOnly(Method):
    """L = CE(main) + λ_seg·CE(aux) on labelled source images; the target is never seen."""

    uses_target = False

    def training_step(self, model: nn.Module, source: Batch, target: Batch | None, step: int,
                      backward: Backward) -> dict[str, Tensor]:
        seg, _ = source_ce_step(model, source, self.cfg.lambda_seg_aux, backward)
        return {"seg": seg}


class Oracle(SourceOnly):
    """The same loss on the *target* train labels: what full supervision in the target domain reaches."""

    trains_on_target_labels = True


class SelfTraining(SourceOnly):
    """The same loss on target train images with pseudo-labels (``DataConfig.pseudo_label_dir``)."""

    trains_on_target_labels = True


def _baseline(preset: str, dataset: str) -> tuple[SupervisedConfig, dict, dict]:
    return SupervisedConfig(), {}, {}


VARIANTS = {
    "source_only": (SourceOnly, _baseline),
    "oracle": (Oracle, _baseline),
}
