"""Lovasz-softmax: a convex surrogate of the Jaccard (IoU) loss, used by SDCA on source images.

Berman, Rannen Triki, Blaschko, "The Lovasz-Softmax Loss: A Tractable Surrogate for the Optimization of
the Intersection-over-Union Measure in Neural Networks", CVPR 2018, https://arxiv.org/abs/1705.08790.

For a class c, let F be its ground-truth pixel set and m_i = |[y_i = c] - p_i(c)| the pixel errors. The
Jaccard loss of a set M of mispredicted pixels is Delta(M) = 1 - |F \\ M| / |F u M|. Its Lovasz
extension evaluated at m is

    Delta_bar(m) = sum_k m_(k) * (Delta({(1), ..., (k)}) - Delta({(1), ..., (k-1)}))

with m_(1) >= m_(2) >= ... the errors sorted in decreasing order and fg the gt indicator in that
order. The increments only need cumulative sums (Algorithm 1 of the paper):
    inter_k = |F| - cumsum(fg)_k,  union_k = |F| + cumsum(1 - fg)_k,  Delta(top k) = 1 - inter_k / union_k.
The loss is the mean of Delta_bar over the classes considered. As shipped in SDCA (``core/utils/lovasz_loss.py``):
classes='present' (classes that occur in the valid labels), per_image=False (all pixels of the batch
pooled), ignore 255, on softmax probabilities of the logits upsampled to the label size.

Cost: one sort of N values per class (a loop over at most K classes, none over pixels); peak memory O(N).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from udalib.config import IGNORE_INDEX
from udalib.inference import upsample


def lovasz_grad(fg_sorted: Tensor) -> Tensor:
    """Increments of the Jaccard loss along a sorted pixel order.

    Args:
        fg_sorted: (N,) float, 1 where the pixel belongs to the class, ordered by decreasing error.

    Returns:
        (N,) g with g_k = Delta(first k pixels) - Delta(first k-1 pixels), Delta(empty set) = 0.
    """
    num_fg = fg_sorted.sum()
    intersection = num_fg - fg_sorted.cumsum(0)
    union = num_fg + (1.0 - fg_sorted).cumsum(0)  # >= 1 from the first pixel on, never 0
    jaccard = 1.0 - intersection / union  # Delta of the top-k set, k = 1..N
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_softmax(
    probs: Tensor,
    labels: Tensor,
    classes: str | Sequence[int] = "present",
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Lovasz-softmax loss over all pixels of the batch (per_image=False).

    Args:
        probs: (B, C, H, W) class probabilities (softmax over dim 1), same H, W as ``labels``.
        labels: (B, H, W) integer labels in [0, C) or ``ignore_index``.
        classes: "present" (classes occurring among the valid labels, SDCA's setting), "all", or an
            explicit list of class indices.
        ignore_index: label excluded from the loss.

    Returns:
        Scalar float32 tensor; 0 attached to the graph if no pixel is valid or no class is selected.
    """
    if probs.dim() != 4 or labels.shape != (probs.shape[0], *probs.shape[2:]):
        raise ValueError(
            f"expected probs (B, C, H, W) and labels (B, H, W), got {tuple(probs.shape)}, {tuple(labels.shape)}"
        )
    num_classes = probs.shape[1]
    flat_p = probs.permute(0, 2, 3, 1).reshape(-1, num_classes)  # (B*H*W, C)
    flat_y = labels.reshape(-1).long()  # (B*H*W,)
    valid = flat_y != ignore_index
    flat_p, flat_y = flat_p[valid].float(), flat_y[valid]  # (N, C), (N,)
    zero = probs.sum() * 0.0
    if flat_y.numel() == 0:
        return zero

    if classes == "present":
        selected = torch.unique(flat_y).tolist()
    elif classes == "all":
        selected = list(range(num_classes))
    elif isinstance(classes, str):
        raise ValueError(f"classes must be 'present', 'all' or a list of ints, got {classes!r}")
    else:
        selected = [int(c) for c in classes]

    losses = []
    for c in selected:  # at most C iterations; each one is vectorised over the N pixels
        fg = (flat_y == c).float()  # (N,)
        errors = (fg - flat_p[:, c]).abs()  # (N,)
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[order])))
    if not losses:
        return zero
    return torch.stack(losses).mean()


def lovasz_softmax_logits(
    logits: Tensor, labels: Tensor, classes: str | Sequence[int] = "present", ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Lovasz-softmax on softmax(upsample(logits)) at the label size, as SDCA applies it to the source.

    Args:
        logits: (B, C, h, w) raw scores; upsampled (bilinear, align_corners=True) to labels' (H, W).
        labels: (B, H, W) integer labels, ``ignore_index`` for void.
    """
    up = upsample(logits, tuple(labels.shape[-2:])).float()  # (B, C, H, W)
    return lovasz_softmax(torch.softmax(up, dim=1), labels, classes=classes, ignore_index=ignore_index)
