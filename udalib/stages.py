"""Cached stages: a run whose ``init_checkpoint`` (or ``pseudo_label_dir``) is ``"stage:<method>"`` starts from the
final checkpoint (or the pseudo-labels) of that method's run under the same preset, data, model and seed, trained
once and cached, keyed by its config, under ``$UDABOOK_CACHE/stages``. This is how every quick chapter adapts
from one shared source-only model, as the seeds adapt from a source-pretrained network, and how SDCA chains its
stages.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .config import STAGE_PREFIX, RunConfig, cache_key, cache_root, resolve_device
from .data.domains import build_domains, target_label_size
from .data.labels import get_protocol
from .models.trained import load_trained
from .presets import resolve
from .pseudo_labels import THRESHOLDS_FILE, generate_pseudo_labels
from .run_folder import RunFolder
from .train import TrainResult, train


def stage_config(cfg: RunConfig, method: str) -> RunConfig:
    """The config of the stage `method` that `cfg` starts from: same preset, data roots, backbone, seed, device."""
    t = cfg.train
    stage = resolve(
        method,
        cfg.preset,
        dataset=cfg.data.source,
        data_root=cfg.data.source_root,
        target_root=cfg.data.target_root,
        data_overrides={"synthcity_shift": cfg.data.synthcity_shift},
        backbone=t.backbone,
        seed=t.seed,
        device=t.device,
    )
    return cached_run(stage, method)


def cached_run(cfg: RunConfig, name: str) -> RunConfig:
    """`cfg` with its run folder in the stage cache, ``stages/<name>-<key of the config>``."""
    key = cache_key(cfg.identity())
    return dataclasses.replace(cfg, out_dir=str(cache_root() / "stages" / f"{name}-{key}"), resume=None)


def stage_checkpoint(cfg: RunConfig, method: str, *, progress: str = "lines") -> Path:
    """Path of the final checkpoint of stage `method` for `cfg`, training it first if the cache lacks it."""
    stage = stage_config(cfg, method)
    if not stage.final_checkpoint.exists():
        print(f"training stage {method!r} into the cache {stage.out_dir} (once per preset and seed)")
        run(RunFolder(stage).continuing(), progress=progress)
    return stage.final_checkpoint


def stage_pseudo_labels(cfg: RunConfig, method: str, *, progress: str = "lines") -> Path:
    """Folder of pseudo-labels made by stage `method`'s final model on target train (cached like the stage)."""
    ckpt = stage_checkpoint(cfg, method, progress=progress)
    out = ckpt.parent / "pseudo_labels"
    if not (out / THRESHOLDS_FILE).exists():
        stage = stage_config(cfg, method)
        device = resolve_device(stage.train.device)
        generate_pseudo_labels(
            load_trained(ckpt, device),
            build_domains(stage).pseudo_label_loader(),
            out,
            num_classes=get_protocol(stage.data.protocol).num_classes,
            label_size=target_label_size(stage),
            device=device,
            overwrite=out.exists(),
        )
    return out


def resolve_stages(cfg: RunConfig, *, progress: str = "lines") -> RunConfig:
    """Replace ``stage:<method>`` references (initial weights, pseudo-label folder) by cached stage outputs."""
    init = cfg.train.init_checkpoint
    if init and init.startswith(STAGE_PREFIX):
        path = stage_checkpoint(cfg, init.removeprefix(STAGE_PREFIX), progress=progress)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_checkpoint=str(path)))
    pl = cfg.data.pseudo_label_dir
    if pl and pl.startswith(STAGE_PREFIX):
        folder = stage_pseudo_labels(cfg, pl.removeprefix(STAGE_PREFIX), progress=progress)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, pseudo_label_dir=str(folder)))
    return cfg


def run(cfg: RunConfig, *, progress: str = "bar") -> TrainResult:
    """Train `cfg`, first training (or reusing) the stages it starts from; a request that cannot be met (nothing
    to resume, another run's folder) is refused before any stage is trained."""
    RunFolder(cfg).check_before_start()
    return train(resolve_stages(cfg, progress=progress), progress=progress)


def load_stage(cfg: RunConfig, method: str, *, progress: str = "lines"):
    """The final model of stage `method` for `cfg` (trained first if the cache lacks it), in eval mode."""
    return load_trained(stage_checkpoint(cfg, method, progress=progress), resolve_device(cfg.train.device))
