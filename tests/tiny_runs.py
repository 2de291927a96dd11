"""Tiny versions of the quick preset's runs: a few SynthCity images and iterations, the same code paths."""

from __future__ import annotations

import dataclasses

from udalib.config import RunConfig
from udalib.data import synthcity
from udalib.presets import resolve


def tiny_config(method: str, tmp_path, *, iters: int = 4, counts=(48, 16, 8), size=(64, 128), **train) -> RunConfig:
    """The quick preset of `method` shrunk to a few images and iterations (same code paths)."""
    cfg = resolve(method, "quick", out_dir=str(tmp_path / method))
    return shrink(cfg, iters=iters, counts=counts, size=size, **train)


def shrink(cfg: RunConfig, *, iters: int = 4, counts=(48, 16, 8), size=(64, 128), **train) -> RunConfig:
    """`cfg` (a quick run on SynthCity) on a few images of the cache's SynthCity and a few iterations."""
    data = dataclasses.replace(
        cfg.data,
        synthcity_counts=counts,
        synthcity_size=size,
        source_size=(32, 64),
        target_size=(32, 64),
        eval_size=(32, 64),
    )
    root = str(synthcity.cache_dir(data))
    data = dataclasses.replace(data, source_root=root, target_root=root)
    t = dataclasses.replace(
        cfg.train,
        iters=iters,
        poly_horizon=max(iters * 2, cfg.train.poly_horizon // 100),
        batch_source=2,
        batch_target=2,
        eval_every=iters,
        checkpoint_every=iters,
        log_every=1,
        **train,
    )
    return dataclasses.replace(cfg, data=data, train=t)


def shrink_resolve(iters: int = 2):
    """A stand-in for ``udalib.presets.resolve`` that shrinks what it resolves (for code that resolves its own
    configs: the CLI, cached stages, ``udalib reproduce``)."""

    def tiny_resolve(*args, **kw) -> RunConfig:
        return shrink(resolve(*args, **kw), iters=iters)

    return tiny_resolve
