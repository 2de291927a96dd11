"""The clustering loss of orthogonal and clustered embeddings: features attract to their class prototype, the
prototypes repel each other.

Toldo, Michieli, Zanuttigh, WACV 2021, https://arxiv.org/abs/2011.12616 (released ``utils/losses.py``).
With ℓ_p(X) = ||X||_p / numel(X) (the entrywise p-norm over the number of entries; p = 1: the mean absolute value):

    f_s    = mean_k ℓ_p(c_k − F_s[ŷ_s = k])         over the classes k present in the source pixels
    f_t    = mean_k ℓ_p(c_k − F_t[ŷ_t = k])         likewise on the target
    c_dist = mean_k ℓ_p(c_k − C_{j≠k})              over the seen prototypes
    L_cl   = a·f_s + b·f_t − c·c_dist               (a, b, c) = (1, 1, 1) by default

The repulsion is linear and unbounded (as released). Example::

    loss = clustering_loss(f_src, y_src, f_tgt, y_tgt, centroids, seen)     # (N, D) features, (N,) labels
"""

from __future__ import annotations

import torch
from torch import Tensor


def _lp(x: Tensor, p: float, groups: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Per group g: ||x[groups == g]||_p / numel, for (N, D) x and (N,) group ids; and which groups are present."""
    sums = torch.zeros(num_groups, dtype=x.dtype, device=x.device)
    sums = sums.index_add(0, groups, x.abs().pow(p).sum(dim=1))
    counts = torch.bincount(groups, minlength=num_groups).to(x.dtype) * x.shape[1]
    present = counts > 0
    return sums.pow(1 / p) / counts.clamp(min=1), present


def attraction(features: Tensor, labels: Tensor, centroids: Tensor, p: float = 1.0) -> Tensor:
    """mean_k ℓ_p(c_k − F[ŷ = k]) over the classes present; `features` (N, D), `labels` (N,), `centroids` (K, D).
    Labels outside [0, K) are ignored; 0 when no pixel is labelled."""
    k = centroids.shape[0]
    valid = (labels >= 0) & (labels < k)
    feats, labs = features[valid], labels[valid]
    per_class, present = _lp(feats - centroids[labs], p, labs, k)
    return per_class[present].mean() if present.any() else features.sum() * 0


def repulsion(centroids: Tensor, seen: Tensor, p: float = 1.0) -> Tensor:
    """mean_k ℓ_p(c_k − C_{j≠k}) over the seen prototypes (0 with fewer than two)."""
    c = centroids[seen]
    n = c.shape[0]
    if n < 2:
        return centroids.sum() * 0
    diff = (c[:, None, :] - c[None, :, :]).abs().pow(p)  # (n, n, D); the diagonal is zero
    norms = diff.sum(dim=(1, 2)).pow(1 / p) / ((n - 1) * c.shape[1])
    return norms.mean()


def clustering_loss(
    source_features: Tensor,
    source_labels: Tensor,
    target_features: Tensor,
    target_labels: Tensor,
    centroids: Tensor,
    seen: Tensor,
    *,
    p: float = 1.0,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> Tensor:
    """L_cl = a·f_s + b·f_t − c·c_dist (module docstring); features (N, D), labels (N,), centroids (K, D)."""
    a, b, c = weights
    f_s = attraction(source_features, source_labels, centroids, p)
    f_t = attraction(target_features, target_labels, centroids, p)
    return a * f_s + b * f_t - c * repulsion(centroids, seen, p)


__all__ = ["attraction", "clustering_loss", "repulsion"]
