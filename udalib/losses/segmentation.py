"""Supervised pixel cross-entropy on upsampled logits (every seed's source loss).

The logits (B, K, h, w) come at the network's output stride; they are upsampled bilinearly with
align_corners=True (``udalib.inference.upsample``) to the label size (H, W), then

    CE = (1 / |V|) * sum_{i in V} -log softmax(z_i)[y_i],     V = {pixels with y_i != 255}

with no class weighting (AdaptSegNet ``utils/loss.py:CrossEntropy2d``; SDCA ``train_sdca.py``).
The multi-level form of AdaptSegNet/ADVENT is L_seg = CE(main) + lambda_aux * CE(aux), lambda_aux = 0.1
(Tsai et al., CVPR 2018, https://arxiv.org/abs/1802.10349).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from udalib.config import IGNORE_INDEX
from udalib.inference import upsample
from udalib.models.output import SegOutput


def seg_ce(logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean pixel cross-entropy over valid pixels, on logits upsampled to the label size.

    Args:
        logits: (B, K, h, w) raw scores at any resolution.
        labels: (B, H, W) integer trainIds, ``ignore_index`` for void pixels.
        ignore_index: label value excluded from the loss (255).

    Returns:
        Scalar float32 tensor. If no pixel is valid it is 0, still attached to the graph (no NaN).
    """
    if labels.dim() != 3:
        raise ValueError(f"labels must be (B, H, W), got shape {tuple(labels.shape)}")
    labels = labels.long()
    up = upsample(logits, tuple(labels.shape[-2:])).float()  # (B, K, H, W)
    total = F.cross_entropy(up, labels, ignore_index=ignore_index, reduction="sum")
    num_valid = (labels != ignore_index).sum().clamp_min(1)
    return total / num_valid


def multi_level_ce(out: SegOutput, labels: Tensor, lambda_aux: float = 0.1, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """L_seg = CE(main logits) + lambda_aux * CE(aux logits); the aux term is skipped when the model is
    single-level (``out.aux_logits is None``) or lambda_aux == 0.

    Args:
        out: the model's ``SegOutput`` (logits and aux_logits (B, K, h, w)).
        labels: (B, H, W) trainIds with ``ignore_index`` for void.
        lambda_aux: weight of the auxiliary (layer3) head, 0.1 in AdaptSegNet/ADVENT.
    """
    loss = seg_ce(out.logits, labels, ignore_index)
    if out.aux_logits is not None and lambda_aux != 0:
        loss = loss + lambda_aux * seg_ce(out.aux_logits, labels, ignore_index)
    return loss
