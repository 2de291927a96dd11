"""Which preset a run gets on this machine, and whether it may start: the rule behind the headline command.

``preset="auto"`` (the chapters' and ``udalib train``'s default) means: the ``paper`` preset when a CUDA device is
here and the real datasets are configured (:mod:`udalib.dataset_roots`), the ``quick`` one otherwise. So
``papermill notebooks/sdca.ipynb out.ipynb -p iters 40000`` trains ResNet-101 on GTA5 → Cityscapes on a configured
GPU machine, and the small network on SynthCity on a laptop. Asking for ``paper`` (or for a real dataset) where
something is missing is refused with everything that is missing listed at once.

A run expected to last more than :data:`LONG_RUN_HOURS` does not start by surprise: on a CPU it needs
``confirm_long_run``; on a GPU it needs that or an explicit ``iters`` (a reader pressing Run All in JupyterLab on a
configured GPU machine does not start 150,000 iterations). The first line a run prints, :func:`banner`, says what
was chosen and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .config import RunConfig, resolve_device
from .data import synthcity
from .dataset_roots import ENV, config_file, configured_roots
from .presets import resolve
from .user_error import UserError, setting

AUTO = "auto"
#: Rough seconds per training iteration of the presets' batches, by device type and backbone, for the estimate
#: only (small on 2 CPU cores: measured 0.15 s at batch 8; the others are upper guesses until measured).
SECONDS_PER_ITER = {
    "cpu": {"small": 0.2, "vgg16": 30.0, "resnet101": 60.0},
    "cuda": {"small": 0.02, "vgg16": 0.2, "resnet101": 0.3},
}
LONG_RUN_HOURS = 1.0


class ChoiceError(UserError, ValueError):
    """The requested preset cannot run here; the message lists everything missing."""


class LongRunError(UserError, RuntimeError):
    """A run would take hours and was not confirmed."""


@dataclass(frozen=True)
class Choice:
    """The preset and data a run gets, and why (one phrase, for the banner)."""

    preset: str
    dataset: str
    data_root: str | None
    target_root: str | None
    reason: str


def _missing(dataset: str, data_root: str | None, target_root: str | None, cuda: bool, roots: dict) -> list[str]:
    missing = [] if cuda else ["a CUDA device (torch.cuda.is_available() is False here)"]
    if dataset != "synthcity":
        if not (data_root or roots.get(dataset)):
            missing.append(_root_wanted(dataset, "data_root", ENV[dataset]))
        if not (target_root or roots.get("cityscapes")):
            missing.append(_root_wanted("Cityscapes", "target_root", ENV["cityscapes"]))
    return missing


def _root_wanted(dataset: str, parameter: str, variable: str) -> str:
    return f"the {dataset} root, given as {setting(parameter, 'PATH')}, or in {variable} or {config_file()}"


def choose(
    preset: str = AUTO,
    dataset: str | None = None,
    data_root: str | None = None,
    target_root: str | None = None,
    device: str = "auto",
    *,
    cuda: bool | None = None,
) -> Choice:
    """The preset, dataset and roots a run gets here (`cuda`: whether a CUDA device is usable; default: ask torch,
    and no when `device` is "cpu").

    Example: on a laptop ``choose()`` is ``Choice("quick", "synthcity", None, None, "no CUDA device here")``; on a
    GPU machine with ``UDABOOK_GTA5`` and ``UDABOOK_CITYSCAPES`` set it is the paper preset on those roots.
    """
    if cuda is None:
        cuda = device != "cpu" and torch.cuda.is_available()
    if preset not in ("quick", "paper", AUTO):
        raise ValueError(f"unknown preset {preset!r}; expected 'auto', 'quick' or 'paper'")
    if preset == "quick":
        return Choice("quick", dataset or "synthcity", data_root, target_root, "preset quick asked for")
    if preset == AUTO and (dataset == "synthcity" or (data_root and (Path(data_root) / synthcity.META_FILE).is_file())):
        return Choice("quick", "synthcity", data_root, target_root, "SynthCity asked for")
    # paper asked for, real data asked for (a dataset or a root), or auto: the paper preset if it can run here
    asked = "preset paper" if preset == "paper" else dataset if dataset else "a data root" if data_root else None
    dataset = dataset or "gta5"
    roots = configured_roots()  # read once: the environment and the datasets file
    missing = _missing(dataset, data_root, target_root, cuda, roots)
    if asked is None and missing:
        why = "no CUDA device here" if not cuda else f"{dataset} or Cityscapes not configured ({ENV[dataset]}, ...)"
        return Choice("quick", "synthcity", None, None, why)
    if missing:
        raise ChoiceError(f"{asked} on {dataset} cannot run here; it needs " + "; ".join(missing))
    reason = f"{asked} asked for" if asked else f"CUDA device and {dataset} + Cityscapes configured"
    if dataset == "synthcity":  # the paper preset on SynthCity at the paper's resolution: a GPU check without data
        return Choice("paper", dataset, data_root, target_root, reason)
    return Choice("paper", dataset, data_root or roots[dataset], target_root or roots["cityscapes"], reason)


def estimated_hours(cfg: RunConfig, device: torch.device) -> float:
    """A rough duration of `cfg`'s training on `device` (cached stages not included)."""
    per_iter = SECONDS_PER_ITER["cuda" if device.type == "cuda" else "cpu"].get(cfg.train.backbone, 60.0)
    return cfg.train.iters * cfg.train.accum * per_iter / 3600


def check_duration(cfg: RunConfig, device: torch.device, *, iters_given: bool, confirmed: bool) -> None:
    """Refuse a run over :data:`LONG_RUN_HOURS` unless confirmed (on a GPU an explicit `iters` also confirms)."""
    hours = estimated_hours(cfg, device)
    if hours <= LONG_RUN_HOURS or confirmed or (device.type == "cuda" and iters_given):
        return
    raise LongRunError(
        f"{cfg.method} for {cfg.train.iters:,} iterations would take about {hours:.1f} h on {device.type}; "
        f"set confirm_long_run to start it: {setting('confirm_long_run', True)}"
        + ("" if device.type == "cuda" else "; or run it on a CUDA machine")
    )


def banner(choice: Choice, cfg: RunConfig, device: torch.device) -> str:
    """The first line a run prints: preset, data, device and iterations, and why that preset."""
    if cfg.data.source == "synthcity":
        data = f"SynthCity v{synthcity.VERSION} in {'the cache' if choice.data_root is None else choice.data_root}"
    else:
        data = f"{cfg.data.source} {cfg.data.source_root} -> {cfg.data.target} {cfg.data.target_root}"
    hours = estimated_hours(cfg, device)
    duration = f"about {hours * 60:.0f} min" if hours < 1 else f"about {hours:.1f} h"
    return (
        f"udabook: preset {cfg.preset} ({choice.reason}) | {data} | {device} | "
        f"{cfg.train.iters:,} iterations of {cfg.method} ({duration} here)"
    )


def resolve_run(
    method: str,
    preset: str = AUTO,
    *,
    confirm_long_run: bool = False,
    say=print,
    **params,
) -> RunConfig:
    """The run config of `method` under the rule of this module: choose the preset, resolve it, `say` the
    banner, and refuse an unconfirmed long run. `params` are :func:`udalib.presets.resolve`'s keywords."""
    choice = choose(
        preset,
        params.pop("dataset", None),
        params.pop("data_root", None),
        params.pop("target_root", None),
        params.get("device") or "auto",
    )
    cfg = resolve(
        method,
        choice.preset,
        dataset=choice.dataset,
        data_root=choice.data_root,
        target_root=choice.target_root,
        **params,
    )
    device = resolve_device(cfg.train.device)
    say(banner(choice, cfg, device))
    check_duration(cfg, device, iters_given=params.get("iters") is not None, confirmed=confirm_long_run)
    return cfg
