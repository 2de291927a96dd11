"""Class prototypes (centroids) of pixel features under given labels, in the graph.

Toldo, Michieli, Zanuttigh, "Unsupervised Domain Adaptation in Semantic Segmentation via Orthogonal and
Clustered Embeddings", WACV 2021, https://arxiv.org/abs/2011.12616 (released ``utils/losses.py``):

    c_k = mean { F_n : ŷ_n = k }        over the pixels n of a batch (source ∪ target), for every class k seen

Gradients flow through the prototypes, as released. Labels outside [0, K) (void, 255) are left out.
:func:`smoothed_prototypes` is the released option ``--centroid_smoothing s`` (an exponential moving average
across iterations). Example::

    feats = torch.cat([flatten_pixels(out_s.features), flatten_pixels(out_t.features)])      # (N, D)
    labels = torch.cat([y_s.reshape(-1), y_t.reshape(-1)])                                   # (N,)
    centroids, seen = class_prototypes(feats, labels, num_classes=19)                       # (19, D), (19,)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_prototypes(features: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Mean feature per class: (K, D) prototypes (zero rows for unseen classes) and the (K,) bool mask of seen ones.

    Args:
        features: (N, D) pixel features.
        labels: (N,) class ids; values outside [0, K) are ignored.
        num_classes: K.
    """
    valid = (labels >= 0) & (labels < num_classes)
    onehot = F.one_hot(torch.where(valid, labels, 0), num_classes).to(features.dtype) * valid[:, None]  # (N, K)
    counts = onehot.sum(dim=0)  # (K,)
    sums = onehot.t() @ features  # (K, D)
    seen = counts > 0
    return sums / counts.clamp(min=1)[:, None], seen


def smoothed_prototypes(
    centroids: Tensor, seen: Tensor, average: Tensor, average_seen: Tensor, smoothing: float
) -> tuple[Tensor, Tensor]:
    """The released exponential moving average of the prototypes (UDAclustering ``utils/losses.py``:
    ``feat_reg_ST_loss.compute_centroids_mixed`` with ``centroids_smoothing = s >= 0``):

        ā_k = a_k if class k was seen before, else c_k (detached)        (a: the running average)
        c̃_k = c_k if class k is in this batch, else ā_k
        ĉ_k = s·c̃_k + (1 − s)·ā_k                                        (ā detached: the gradient is s times c's)

    A class absent from the batch keeps its average and stays in the losses (the repulsion, the orthogonality and
    the sparsity see it; the attraction has no pixel of it). The caller stores ĉ (detached) as the new average;
    the released code does so at each of its two prototype computations per step. Example::

        smoothed, known = smoothed_prototypes(centroids, seen, avg, avg_seen, 0.5)
        avg, avg_seen = torch.where(known[:, None], smoothed.detach(), avg), known

    Args:
        centroids: (K, D) this batch's prototypes, in the graph; `seen` (K,) bool, the classes it has.
        average: (K, D) the running prototypes; `average_seen` (K,) bool, the classes they hold.
        smoothing: s in [0, 1] (1: this batch alone, whose gradient it keeps).

    Returns:
        (K, D) smoothed prototypes and the (K,) bool mask of the classes they hold (seen now or before).
    """
    if not 0 <= smoothing <= 1:
        raise ValueError(f"centroid smoothing must be in [0, 1], got {smoothing}")
    avg = torch.where(average_seen[:, None], average.to(centroids.dtype), centroids.detach())
    current = torch.where(seen[:, None], centroids, avg)
    return smoothing * current + (1 - smoothing) * avg, seen | average_seen
