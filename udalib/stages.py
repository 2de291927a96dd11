"""Cached stages: a run whose ``init_checkpoint`` (or ``pseudo_label_dir``) is ``"stage:<method>"`` starts from the
final checkpoint (or the pseudo-labels) of that method's run under the same preset, data, model and seed, trained
once and cached, keyed by its config, under ``$UDABOOK_CACHE/stages``. This is how every quick chapter adapts
from one shared source-only model, as the seeds adapt from a source-pretrained network, and how SDCA chains its
stages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from .config import STAGE_PREFIX, DataConfig, RunConfig, cache_key, cache_root, resolve_device
from .data import synthcity
from .data.domains import build_domains, target_label_size
from .data.labels import get_protocol
from .methods import get as get_method
from .models.trained import load_trained
from .presets import resolve
from .pseudo_labels import generate_pseudo_labels, labels_order
from .run_folder import RunFolder
from .train import TrainResult, train


def stage_config(cfg: RunConfig, method: str, ablation: Mapping | None = None) -> RunConfig:
    """The config of the stage `method` that `cfg` starts from: same preset, data roots, backbone, seed, device.

    A stage that learns from source images alone (no target batch, source labels) does not depend on a generated
    SynthCity pair's target shift (the source half of every pair is the same images), so it is the default pair's
    stage: a method adapting to the pair of one knob starts from the same cached source-only model as on the default
    pair.

    ablation: the overrides of the ablation `cfg` is a run of (``ResultEntry.overrides``: "train", "method" and
    "data" keyword dicts of the resolver). An ablation changes how a method adapts, so a stage it starts from that
    adapts too (sees the target while it trains) is resolved with the same overrides: BAFFT's frozen-BN step 2
    starts from, and takes its pseudo-labels from, a frozen-BN step 1, and the control differs from its method in
    that one setting along the whole chain. A stage that learns from source alone (source-only, SDCA's stage 1) is
    the common starting point of every method and of its controls and is kept as it is ("BatchNorm frozen during
    adaptation" says nothing about source training). A method override reaches only the stages whose method config
    has that field (``local_pixels`` means nothing to AdvEnt).
    """
    stage = _stage(cfg, method, cfg.data.synthcity_shift, cfg.data.source_root, cfg.data.target_root)
    default = DataConfig().synthcity_shift
    generated = cfg.data.source == "synthcity" and cfg.data.source_root == str(synthcity.cache_dir(cfg.data))
    if not _reads_target(stage):
        if generated and cfg.data.synthcity_shift != default:
            stage = _stage(cfg, method, default, None, None)
    elif ablation:
        stage = _stage(cfg, method, cfg.data.synthcity_shift, cfg.data.source_root, cfg.data.target_root, ablation)
    return cached_run(stage, method)


def _stage(
    cfg: RunConfig,
    method: str,
    shift: tuple,
    source_root: str | None,
    target_root: str | None,
    ablation: Mapping | None = None,
) -> RunConfig:
    t, ablation = cfg.train, ablation or {}
    known = {f.name for f in dataclasses.fields(get_method(method).config)}
    method_overrides = {k: v for k, v in ablation.get("method", {}).items() if k in known}
    return resolve(
        method,
        cfg.preset,
        dataset=cfg.data.source,
        data_root=source_root,
        target_root=target_root,
        data_overrides={**ablation.get("data", {}), "synthcity_shift": shift},
        method_overrides=method_overrides or None,
        **{**ablation.get("train", {}), "backbone": t.backbone, "seed": t.seed, "device": t.device},
    )


def _reads_target(stage: RunConfig) -> bool:
    """Whether `stage` sees the target domain while it trains (target batches or target labels)."""
    return get_method(stage.method).cls.uses_target or stage.data.labelled != "source"


def cached_run(cfg: RunConfig, name: str) -> RunConfig:
    """`cfg` with its run folder in the stage cache, ``stages/<name>-<key of the config>``."""
    key = cache_key(cfg.identity())
    return dataclasses.replace(cfg, out_dir=str(cache_root() / "stages" / f"{name}-{key}"), resume=None)


def stage_checkpoint(cfg: RunConfig, method: str, *, progress: str = "lines", ablation: Mapping | None = None) -> Path:
    """Path of the final checkpoint of stage `method` for `cfg` (under `ablation`, as :func:`stage_config` says),
    training it first if the cache lacks it."""
    stage = stage_config(cfg, method, ablation)
    if not stage.final_checkpoint.exists():
        print(f"training stage {method!r} into the cache {stage.out_dir} (once per preset and seed)")
        run(RunFolder(stage).continuing(), progress=progress, ablation=ablation)
    return stage.final_checkpoint


def stage_pseudo_labels(
    cfg: RunConfig, method: str, *, progress: str = "lines", ablation: Mapping | None = None
) -> Path:
    """Folder of pseudo-labels made by stage `method`'s final model on target train (cached like the stage)."""
    ckpt = stage_checkpoint(cfg, method, progress=progress, ablation=ablation)
    out = ckpt.parent / "pseudo_labels"
    order = get_method(method).cls.pseudo_label_order
    if labels_order(out) != order:  # none yet, or made in the other order of softmax and upsampling
        stage = stage_config(cfg, method, ablation)
        device = resolve_device(stage.train.device)
        generate_pseudo_labels(
            load_trained(ckpt, device),
            build_domains(stage).pseudo_label_loader(),
            out,
            num_classes=get_protocol(stage.data.protocol).num_classes,
            label_size=target_label_size(stage),
            device=device,
            overwrite=out.exists(),
            order=order,
        )
    return out


def resolve_stages(cfg: RunConfig, *, progress: str = "lines", ablation: Mapping | None = None) -> RunConfig:
    """Replace ``stage:<method>`` references (initial weights, pseudo-label folder) by cached stage outputs; `cfg`
    is a run of `ablation` (its overrides, carried to the stages as :func:`stage_config` says), where given."""
    init = cfg.train.init_checkpoint
    if init and init.startswith(STAGE_PREFIX):
        path = stage_checkpoint(cfg, init.removeprefix(STAGE_PREFIX), progress=progress, ablation=ablation)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_checkpoint=str(path)))
    pl = cfg.data.pseudo_label_dir
    if pl and pl.startswith(STAGE_PREFIX):
        folder = stage_pseudo_labels(cfg, pl.removeprefix(STAGE_PREFIX), progress=progress, ablation=ablation)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, pseudo_label_dir=str(folder)))
    return cfg


def run(cfg: RunConfig, *, progress: str = "bar", ablation: Mapping | None = None) -> TrainResult:
    """Train `cfg` (a run of `ablation`, where given), first training (or reusing) the stages it starts from; a
    request that cannot be met (nothing to resume, another run's folder) is refused before any stage is trained."""
    RunFolder(cfg).check_before_start()
    return train(resolve_stages(cfg, progress=progress, ablation=ablation), progress=progress)


def load_stage(cfg: RunConfig, method: str, *, progress: str = "lines"):
    """The final model of stage `method` for `cfg` (trained first if the cache lacks it), in eval mode."""
    return load_trained(stage_checkpoint(cfg, method, progress=progress), resolve_device(cfg.train.device))
