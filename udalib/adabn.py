"""AdaBN: re-estimate a network's BatchNorm statistics on target images, with no training.

Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation" (ICLR-W 2017): a BN layer normalises
with running estimates of its input's mean and variance; replacing the source estimates by target ones is the
simplest adaptation there is. In udalib it is a *control*: a network whose BatchNorm layers are in train mode
normalises every target batch an adaptation method feeds it with that batch's own statistics and moves its running
statistics towards the target, so part of a gain can come from this alone. That holds for the quick preset's small
backbone (``bn_mode="trainable"``) and for the seeds' ResNet-101 too, whose "frozen" BN freezes only the affine
parameters (``bn_mode="affine_frozen"``); only ``bn_mode="frozen"`` (SDCA's FrozenBatchNorm) removes the effect.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .models.deeplabv2 import batchnorms


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, batches: Iterable, device: torch.device | str = "cpu") -> int:
    """Replace every BN layer's running mean and variance by their average over `batches` of target images.

    The statistics are the cumulative average of per-batch estimates (``momentum=None``), so every batch weighs
    the same; weights and BN affine parameters are untouched. `batches` yields image tensors (N, 3, H, W) or
    tuples whose first element is one. Returns the number of images seen; the model is left in eval mode.
    """
    layers = batchnorms(model)
    if not layers:
        raise ValueError("the model has no BatchNorm layer: AdaBN has nothing to re-estimate")
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
    model.eval()
    for bn in layers:  # only BN leaves eval mode, even where the model's own train() keeps it frozen
        bn.train()
    seen = 0
    try:
        for batch in batches:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(images.to(device))
            seen += images.shape[0]
    finally:
        for bn, m in zip(layers, momenta):
            bn.momentum = m
        model.eval()
    if seen == 0:
        raise ValueError("AdaBN got no target images")
    return seen
