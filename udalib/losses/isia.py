"""ISIA: intra-class aggregation and inter-class separation across domains (BAFFT's category level).

Yuan et al., IEEE TIP 31, 2022 (ISIA; ``train_step2.py``). With c_{s,i}, c_{t,i} the source and
target representations (masked average pools) of class i, the paper's loss is

    L_ISIA = Σ_i ℓ1(c_{s,i}, c_{t,i}) + β · Σ_i Σ_{k≠i} D_sim(c_{s,i}, c_{t,k}),   D_sim(a, b) = (1 + cos(a, b)) / 2

over the classes both domains have: the same class pulled together, different classes pushed apart (D_sim in
[0, 1] on the real D-dimensional cosine). ℓ1 is the mean absolute difference (the banks' distance). The released
code realises the idea twice more, both available here:

* :func:`stuff_thing_separation` (HEAD ``train_step2.py``): separation only, between the *target* stuff vectors and
  the target thing instances, each class's instances averaged; the released code multiplies by 500/2048 (the rows
  of an ``expand``), `scale` here.
* :func:`probability_map_terms` (the historic "ISIA loss" file): on softmax maps, pixel by pixel between two
  unrelated images, with the cosine taken over a *singleton* channel, which is 1 wherever both probabilities are
  positive: the separation term is a constant with no gradient. Kept to show that pitfall, not to train with.

Example::

    agg, sep = isia_terms(src_reps, tgt_reps, src_present, tgt_present)
    loss = agg + beta * sep
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def d_sim(a: Tensor, b: Tensor) -> Tensor:
    """(1 + cos) / 2 between every row of `a` (N, D) and every row of `b` (M, D): (N, M) in [0, 1]."""
    return (1 + F.normalize(a, dim=1) @ F.normalize(b, dim=1).t()) / 2


def isia_terms(source: Tensor, target: Tensor, source_present: Tensor, target_present: Tensor) -> tuple[Tensor, Tensor]:
    """(aggregation, separation) of the paper's L_ISIA over the classes present in both domains; `source`,
    `target` (K, D) class representations, `*_present` (K,) bool. Zeros when no class is shared."""
    both = source_present & target_present
    if not both.any():
        zero = (source.sum() + target.sum()) * 0
        return zero, zero
    s, t = source[both], target[both]
    aggregation = (s - t).abs().mean(dim=1).sum()
    sim = d_sim(s, t)
    separation = (sim.sum() - sim.diagonal().sum()) if s.shape[0] > 1 else sim.sum() * 0
    return aggregation, separation


def stuff_thing_separation(stuff: Tensor, things: Tensor, thing_classes: Tensor, scale: float = 1.0) -> Tensor:
    """The released separation: Σ_{stuff c} Σ_{thing class k} mean_{instances i of k} D_sim(f_c, f_{k,i}) · scale;
    `stuff` (S, D), `things` (N, D) instance vectors with their (N,) classes. 0 without both."""
    if stuff.shape[0] == 0 or things.shape[0] == 0:
        return (stuff.sum() + things.sum()) * 0
    sim = d_sim(stuff, things)  # (S, N)
    per_class = [sim[:, thing_classes == k].mean(dim=1) for k in thing_classes.unique()]  # a loop over classes
    return torch.stack(per_class, dim=1).sum() * scale


def probability_map_terms(source_prob: Tensor, target_prob: Tensor) -> tuple[Tensor, Tensor]:
    """The historic released terms on (B, C, H, W) softmax maps of a source and a target image of the same size:
    L_same = (1/2048)·Σ_i Σ_x |P_s^i(x) − P_t^i(x)| and L_diff = Σ_i Σ_{j≠i} mean_x (1 + cos(P_s^i(x), P_t^j(x)))/2
    / 2048, the cosine over the singleton channel of one class's probability at one pixel (see the module
    docstring: it is 1 wherever both are positive)."""
    c = source_prob.shape[1]
    same = (source_prob - target_prob).abs().sum() / 2048
    diff = source_prob.new_zeros(())
    for i in range(c):
        for j in range(c):
            if i != j:
                cos = F.cosine_similarity(source_prob[:, i : i + 1], target_prob[:, j : j + 1], dim=1)
                diff = diff + ((1 + cos) / 2).mean() / 2048
    return same, diff
