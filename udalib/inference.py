"""Full-resolution inference shared by evaluation and pseudo-labelling."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def upsample(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling with align_corners=True, as every seed does before its losses and at test time."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


@torch.no_grad()
def predict_logits(model: nn.Module, images: Tensor, out_size: tuple[int, int]) -> Tensor:
    """Main-head logits of `images` (B, 3, h, w), upsampled to `out_size` (H, W): (B, K, H, W), float32."""
    out = model(images)
    return upsample(out.logits.float(), out_size)


#: upsampled probabilities (B, K, H, W) → a discriminator's input (B, K, H, W): the softmax itself or its
#: self-information map
MapFn = Callable[[Tensor], Tensor]


def level_maps(out, size: tuple[int, int], fn: MapFn) -> dict[str, Tensor]:
    """{level: M(softmax(upsample(logits)))} at the network input size, for the levels the model has."""
    maps = {"main": fn(torch.softmax(upsample(out.logits, size).float(), dim=1))}
    if out.aux_logits is not None:
        maps["aux"] = fn(torch.softmax(upsample(out.aux_logits, size).float(), dim=1))
    return maps
