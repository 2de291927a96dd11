"""The registry of methods: one file per paper, each exposing ``VARIANTS`` (result name → :class:`Variant`).

A variant is a method class with its config at the paper's values; ``udalib/presets.py`` says what the ``quick``
and ``paper`` presets change for it. The trainer builds a method with :func:`build_method` and never branches on
its name.
"""

from __future__ import annotations

from . import adaptsegnet, advent, bafft, globallocal, maxsquare, ortho_cluster, sdca, supervised
from .base import Method, Variant

REGISTRY: dict[str, Variant] = {
    name: variant
    for module in (supervised, adaptsegnet, advent, globallocal, sdca, maxsquare, ortho_cluster, bafft)
    for name, variant in module.VARIANTS.items()
}


def get(name: str) -> Variant:
    """The registered variant `name` (its class and paper config), or a ValueError listing the valid names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; expected one of {sorted(REGISTRY)} (controls and ablations are results, "
            "made by `udalib reproduce --methods NAME`; `udalib train --list` lists both)"
        ) from None


def build_method(name: str, cfg: object, num_classes: int, *, feature_dim: int, total_iters: int) -> Method:
    """Instantiate method `name` with its (resolved) config for a model of `num_classes` and `feature_dim`."""
    return get(name).cls(cfg, num_classes, feature_dim=feature_dim, total_iters=total_iters)


__all__ = ["REGISTRY", "Method", "Variant", "build_method", "get"]
