"""The contract between a method and the one trainer (``udalib/train.py``).

A method composes losses into one training iteration. The trainer owns the segmenter's optimiser, the schedule,
autocast, accumulation and checkpoints; it calls `training_step` once per micro-batch and never looks inside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..data.streams import Batch

Backward = Callable[[Tensor], None]


class Method(nn.Module):
    """Base class. Subclasses register auxiliary networks (discriminators) and state (banks, estimators) as
    submodules/buffers so that ``state_dict()`` puts them in the checkpoint; the segmenter is *not* a submodule.

    What the method needs from the model is passed in, never looked up: the number of classes K, the channels A of
    the model's ``features`` (feature-level state is sized by it) and the run's length.
    """

    uses_target: ClassVar[bool] = True  # needs unlabelled target batches
    #: how pseudo-labels made from this method's model take softmax and upsampling (``udalib.pseudo_labels``)
    pseudo_label_order: ClassVar[str] = "upsample_then_softmax"

    @property
    def needs_pseudo_labels(self) -> bool:
        """Whether the target batches must carry pseudo-labels (``DataConfig.pseudo_label_dir``): a method that
        trains on target labels must never be given the target's ground truth instead."""
        return False

    def __init__(self, cfg: Any, num_classes: int, *, feature_dim: int = 0, total_iters: int = 0):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.feature_dim = feature_dim  # A, channels of SegOutput.features
        self.total_iters = total_iters  # the run's length, for methods whose schedule depends on it

    def aux_optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimisers of auxiliary networks; the trainer zeroes, schedules (poly) and steps them with the
        segmenter's optimiser, after the accumulation loop. Their base LR is each group's ``initial_lr``."""
        return []

    def prepare(self, model: nn.Module, labelled_loader: Any, device: torch.device) -> None:
        """One-off work before the first iteration of a fresh run (not on resume): e.g. SDCA's estimator pass."""

    def training_step(
        self, model: nn.Module, source: Batch, target: Batch | None, step: int, backward: Backward
    ) -> dict[str, Tensor]:
        """Compute the losses of one (micro-)batch and call `backward(loss)` on each loss to backpropagate
        (it applies accumulation and fp16 scaling). Returns detached scalars named for logging."""
        raise NotImplementedError


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    """Freeze or unfreeze a network (discriminators during the generator's adversarial backward)."""
    for p in module.parameters():
        p.requires_grad_(flag)


@dataclass(frozen=True)
class Variant:
    """A registered method: its class, its config with the paper's values, and one line for ``--list``.

    Several variants may share a class (single- and multi-level AdaptSegNet; source-only and the oracle, which
    differ only in the labelled set their preset row names).
    """

    cls: type[Method]
    config: Any
    description: str
