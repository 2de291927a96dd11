"""The sparsity loss of orthogonal and clustered embeddings: each class prototype should use few channels.

Toldo, Michieli, Zanuttigh, WACV 2021, https://arxiv.org/abs/2011.12616 (released ``utils/losses.py``).
For the seen prototypes C (K', D), non-negative (post-ReLU features):

    Ĉ_k  = C_k / max_d C_{k,d}                                  each prototype scaled to [0, 1]
    L_sp = −mean_{k,d} |Ĉ_{k,d} − ρ|^q                          ρ = 0.5, q = 2

Minimising it pushes every normalised channel away from ρ, towards 0 or 1: a prototype with a few strong
channels and the rest near zero. A prototype whose maximum is 0 is left out. Example::

    loss = prototype_sparsity(centroids[seen], rho=0.5, order=2)
"""

from __future__ import annotations

from torch import Tensor


def prototype_sparsity(prototypes: Tensor, rho: float = 0.5, order: float = 2.0) -> Tensor:
    """L_sp (module docstring) of (K', D) prototypes; 0 when none has a positive maximum."""
    peak = prototypes.max(dim=1, keepdim=True).values
    keep = peak[:, 0] > 0
    if not keep.any():
        return prototypes.sum() * 0
    scaled = prototypes[keep] / peak[keep]
    return -(scaled - rho).abs().pow(order).mean()
