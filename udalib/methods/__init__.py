"""Registry of methods: one file per paper, each exposing ``VARIANTS`` (result name → config builder).

A variant builder takes (preset, dataset) and returns (method config, data overrides, training overrides), so
``udalib.presets.resolve`` can assemble a run and the trainer never branches on a method's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import adaptsegnet, advent, globallocal, sdca, supervised
from .base import Method

if TYPE_CHECKING:
    from ..presets import RunConfig

VariantBuilder = Callable[[str, str], tuple[Any, dict, dict]]

_MODULES = (supervised, adaptsegnet, advent, globallocal, sdca)
VARIANTS: dict[str, tuple[type[Method], VariantBuilder]] = {
    name: entry for module in _MODULES for name, entry in module.VARIANTS.items()
}


def _entry(name: str) -> tuple[type[Method], VariantBuilder]:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(VARIANTS)}") from None


def method_class(name: str) -> type[Method]:
    return _entry(name)[0]


def method_config(name: str, preset: str, dataset: str) -> tuple[Any, dict, dict]:
    return _entry(name)[1](preset, dataset)


def build_method(cfg: "RunConfig", num_classes: int) -> Method:
    return method_class(cfg.method)(cfg.method_cfg, num_classes, cfg.train.iters)


__all__ = ["VARIANTS", "Method", "build_method", "method_class", "method_config"]
