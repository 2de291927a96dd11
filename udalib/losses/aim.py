"""AIM: adaptive weights for instance matching, from each thing class's alignment complexity (BAFFT).

Yuan et al., IEEE TIP 31, 2022 (AIM, in ``train_step2.py``). The paper measures how hard each thing
class k is to align, ζ_k, ranks the classes by it and turns the ranking into weights η_k of the instance term

    L_AIM = Σ_k η_k · mean_{instances r of k} min_j ℓ1(pool(f_t, r), s_{k,j}).

The released code never computes ζ_k from data; this library does: ζ_k is a running mean of
the target instances' nearest-bank distance of class k (detached), and η_k = K'·ζ_k / Σ_j ζ_j over the K' classes
seen so far (mean weight 1, the ranking kept). The released forms are options: static per-class tables
(:data:`RELEASED_THING_WEIGHTS`) and the HEAD script's self-weighting, each distance multiplied by itself without
detaching (:func:`self_weighted`). The "v2" table of the released code is indexed by the instance's *rank*, not its
class, a bug the chapter shows and this library does not reproduce. Example::

    aim = AlignComplexity(num_things=11)
    aim.update(thing_ids, distances)             # (N,) class index among the things, (N,) nearest-bank distances
    loss = (aim.weights()[thing_ids] * distances).mean()
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: The released static thing weights, [pole, light, sign, person, rider, car, truck, bus, train, motorcycle, bicycle]
#: (v1: ``train_sim_SYNTHIA.py``; v2: ``train_sim_ssl_cate.py`` "cate2ins-4 new", there indexed by rank).
RELEASED_THING_WEIGHTS = {
    "v1": (10.0, 5.0, 2.0, 10.0, 5.0, 1.0, 1.0, 2.0, 1.0, 5.0, 5.0),
    "v2": (1.0, 1.0, 5.0, 10.0, 2.0, 1.0, 1.0, 10.0, 20.0, 2.0, 2.0),
}


class AlignComplexity(nn.Module):
    """Running alignment complexity ζ (T,) of the thing classes and the weights η derived from it (buffers, so the
    state is in the checkpoint and a resumed run continues it)."""

    def __init__(self, num_things: int, momentum: float = 0.99):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("zeta", torch.zeros(num_things))
        self.register_buffer("seen", torch.zeros(num_things, dtype=torch.bool))

    @torch.no_grad()
    def update(self, classes: Tensor, distances: Tensor) -> None:
        """Fold the (N,) detached nearest-bank `distances` of instances of (N,) thing `classes` into ζ: the first
        value of a class sets it, later ones move it by 1 − momentum."""
        t = self.zeta.shape[0]
        counts = torch.bincount(classes, minlength=t).to(self.zeta.dtype)
        sums = torch.zeros_like(self.zeta).index_add(0, classes, distances.detach().to(self.zeta.dtype))
        present = counts > 0
        mean = sums / counts.clamp(min=1)
        new = present & ~self.seen
        old = present & self.seen
        self.zeta[new] = mean[new]
        self.zeta[old] = self.momentum * self.zeta[old] + (1 - self.momentum) * mean[old]
        self.seen |= present

    def weights(self) -> Tensor:
        """(T,) η: K'·ζ_k / Σ ζ over the seen classes (mean 1 over them), 1 for classes not seen yet."""
        eta = torch.ones_like(self.zeta)
        if self.seen.any() and self.zeta[self.seen].sum() > 0:
            z = self.zeta[self.seen]
            eta[self.seen] = z * z.numel() / z.sum()
        return eta


def self_weighted(distances: Tensor) -> Tensor:
    """The released HEAD form: each distance weighted by itself, not detached (so each term is d²)."""
    return distances * distances
