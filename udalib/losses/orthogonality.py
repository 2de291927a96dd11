"""The "orthogonality" loss of orthogonal and clustered embeddings: each feature should match one prototype only.

Toldo, Michieli, Zanuttigh, WACV 2021, https://arxiv.org/abs/2011.12616 (released
``utils/losses.py``). For pixel features F (N, D) of both domains and the K' seen prototypes C (K', D):

    z_n    = F_n · Cᵀ / T                                        similarities, (N, K')
    L_orth = −(1/(N·K')) · Σ_n Σ_k softmax(z_n)_k · log softmax(z_n)_k

Minimising the entropy of each feature's similarity distribution makes it align with one prototype; with
non-negative (post-ReLU) features that means disjoint channel supports, i.e. orthogonal class embeddings.
``normalize=True`` (the default here) L2-normalises features and prototypes first (cosine similarities): the
released code uses raw dot products at T = 1, which with 2048-d ReLU features makes the softmax one-hot from the
first step, so its entropy and gradient vanish; ``normalize=False`` is the released form. Example::

    loss = prototype_entropy(feats, centroids[seen], temperature=0.1)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def prototype_entropy(features: Tensor, prototypes: Tensor, temperature: float = 1.0, normalize: bool = True) -> Tensor:
    """L_orth (module docstring); `features` (N, D), `prototypes` (K', D). 0 with fewer than two prototypes."""
    if prototypes.shape[0] < 2:
        return features.sum() * 0
    if normalize:
        features, prototypes = F.normalize(features, dim=1), F.normalize(prototypes, dim=1)
    z = features.float() @ prototypes.float().t() / temperature
    log_s = torch.log_softmax(z, dim=1)
    return -(log_s.exp() * log_s).sum() / z.numel()
