"""Class prototypes (centroids) of pixel features under given labels, in the graph.

Toldo, Michieli, Zanuttigh, "Unsupervised Domain Adaptation in Semantic Segmentation via Orthogonal and
Clustered Embeddings", WACV 2021, https://arxiv.org/abs/2011.12616 (spec bafft_orthogonal_clustering.md §B4):

    c_k = mean { F_n : ŷ_n = k }        over the pixels n of a batch (source ∪ target), for every class k seen

Gradients flow through the prototypes, as released. Labels outside [0, K) (void, 255) are left out. Example::

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
