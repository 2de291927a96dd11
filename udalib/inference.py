"""Full-resolution inference shared by evaluation and pseudo-labelling."""

from __future__ import annotations

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
