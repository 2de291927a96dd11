"""Supervised baselines: source-only (the lower bound), target oracle (the upper bound), and self-training
(retraining on target pseudo-labels, SDCA ``train_ssl.py``). All three are one loss: multi-level pixel cross-entropy.
Chapter: ``notebooks/source_only.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..losses import multi_level_ce
from ..models.output import SegOutput
from .base import Backward, Batch, Method, Variant


@dataclass(frozen=True)
class SupervisedConfig:
    lambda_seg_aux: float = 0.1  # λ_seg: weight of the layer3 head's CE (AdaptSegNet/ADVENT train scripts)


def source_ce_step(model: nn.Module, source: Batch, lambda_aux: float, backward: Backward) -> tuple[Tensor, SegOutput]:
    """Forward the labelled batch, backpropagate CE(main) + λ_aux·CE(aux); returns (detached loss, outputs)."""
    out = model(source.image)
    loss = multi_level_ce(out, source.label, lambda_aux)
    backward(loss)
    return loss.detach(), out


class Supervised(Method):
    """L = CE(main) + λ_seg·CE(aux) on the labelled set: source images (source-only, the lower bound), target train
    labels (the oracle, the upper bound) or target pseudo-labels (self-training); ``DataConfig.labelled`` says
    which. No unlabelled target batch is used."""

    uses_target = False

    def training_step(
        self, model: nn.Module, source: Batch, target: Batch | None, step: int, backward: Backward
    ) -> dict[str, Tensor]:
        seg, _ = source_ce_step(model, source, self.cfg.lambda_seg_aux, backward)
        return {"seg": seg}


VARIANTS = {
    "source_only": Variant(Supervised, SupervisedConfig(), "CE on labelled source images: the lower bound"),
    "oracle": Variant(Supervised, SupervisedConfig(), "CE on target train labels: the upper bound"),
}
