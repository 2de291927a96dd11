"""Entropy of segmentation outputs: ADVENT's weighted self-information map and the MinEnt loss.

Vu et al., "ADVENT: Adversarial Entropy Minimization for Domain Adaptation in Semantic Segmentation",
CVPR 2019, https://arxiv.org/abs/1811.12833 (Sec. 3.1;
released ``advent/utils/func.py:prob_2_entropy``, ``entropy_loss``).

For a softmax prediction P of shape (B, C, H, W) (from logits upsampled to the input size):

    I[b, c, h, w] = -P[b, c, h, w] * log2(P[b, c, h, w] + 1e-30) / log2(C)     weighted self-information
    E[b, h, w]    = sum_c I[b, c, h, w]                   in [0, 1]            normalised entropy map
    L_ent         = mean_{b, h, w} E[b, h, w]                                 MinEnt loss

I keeps all C channels: it is what ADVENT's discriminator sees. E is 0 for a one-hot prediction and 1
for a uniform one. The book explains them in the ADVENT chapter. Example::

    prob = torch.softmax(upsample(out.logits, image.shape[-2:]), dim=1)
    d_in = self_information(prob)            # (B, C, H, W) -> discriminator
    loss = minent_loss(upsample(out.logits, image.shape[-2:]))
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_EPS = 1e-30  # the seeds' epsilon inside log2; representable in float32 and bfloat16


def _wide(x: Tensor) -> Tensor:
    """x in float32, or float64 if it already is; half precision is too coarse for log terms."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def self_information(prob: Tensor) -> Tensor:
    """Weighted self-information map I = -P * log2(P + 1e-30) / log2(C), per channel (not summed).

    Args:
        prob: (B, C, H, W) class probabilities (softmax over dim 1), C >= 2.

    Returns:
        (B, C, H, W) map, each entry in [0, 1/(e * ln 2 * log2 C)], float32 (float64 for float64 input).
    """
    num_classes = prob.shape[1]
    if num_classes < 2:
        raise ValueError(f"self-information needs at least 2 classes on dim 1, got shape {tuple(prob.shape)}")
    p = _wide(prob)
    return -p * torch.log2(p + _EPS) / math.log2(num_classes)


def entropy_map(prob: Tensor) -> Tensor:
    """Normalised Shannon entropy per pixel, E = sum_c I_c, in [0, 1].

    Args:
        prob: (B, C, H, W) class probabilities.

    Returns:
        (B, H, W) entropy map: 0 for one-hot predictions, 1 for uniform ones.
    """
    return self_information(prob).sum(dim=1)


def minent_loss(logits: Tensor) -> Tensor:
    """MinEnt loss: mean over batch and pixels of entropy_map(softmax(logits)).

    Computed stably from ``log_softmax`` in float32: E = -sum_c p_c log p_c / log C, which equals the
    log2 / log2(C) formula above (the 1e-30 epsilon changes it by far less than float32 resolution).
    The seeds apply it to logits upsampled to the input size; do that before calling.

    Args:
        logits: (B, C, H, W) raw scores.

    Returns:
        Scalar tensor in [0, 1].
    """
    num_classes = logits.shape[1]
    if num_classes < 2:
        raise ValueError(f"entropy needs at least 2 classes on dim 1, got shape {tuple(logits.shape)}")
    log_p = torch.log_softmax(_wide(logits), dim=1)  # (B, C, H, W)
    ent = -(log_p.exp() * log_p).sum(dim=1) / math.log(num_classes)  # (B, H, W)
    return ent.mean()
