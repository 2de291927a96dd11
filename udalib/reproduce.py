"""``udalib reproduce``: make the records of the results catalogue (``udalib.results.CATALOGUE``) over seeds under a
preset, one record per run in ``results/<preset>/<name>.json``.

Runs live in the stage cache (:func:`udalib.stages.stage_config`), so the source-only runs measured here are the
very models the adaptation runs start from, and a finished run of the same config is not retrained: its metrics
are recorded again. The catalogue says how each name is made: a method's own run ("trained"), a method retrained
with one setting changed ("ablation", recorded under its own name), or trained models evaluated without training
("evaluated"): the AdvEnt+MinEnt ensemble (ADVENT's 45.5, two models' logits 0.5/0.5) and AdaBN (BatchNorm
statistics re-estimated on target train, :mod:`udalib.adabn`) applied to the source-only model, the control, and
to adapted ones; and the anatomy of SynthCity's gap (:func:`shift_record`: on a pair that differs in one knob,
source-only, AdaBN and that pair's oracle).

Every record carries the identity of the data it was measured on (:func:`udalib.record.data_identity`). Before any
training, the records about to be written are compared with those already in the results folder: one that would
replace a record measured on other (or unknown) data stops the command unless ``replace=True``.
"""

from __future__ import annotations

import dataclasses
import json
import time

import torch
from torch import nn

from . import results, stages
from .adabn import adapt_batchnorm
from .config import RunConfig, resolve_device
from .data.domains import build_domains
from .data.labels import get_protocol
from .evaluate import EvalResult, evaluate
from .models.trained import load_trained
from .presets import resolve
from .record import Record, data_identity
from .results import CATALOGUE
from .run_folder import RunFolder, config_differences


def run_once(cfg: RunConfig, ablation: dict | None = None) -> dict:
    """Train `cfg` unless its folder already holds the finished run of the same config; return its metrics.
    `ablation`: the overrides of the ablation `cfg` is a run of, which reach the stages it starts from
    (:func:`udalib.stages.stage_config`)."""
    metrics, config = cfg.final_checkpoint.parent / "metrics.json", cfg.final_checkpoint.parent / "config.json"
    if metrics.exists() and config.exists() and cfg.final_checkpoint.exists():
        # the stored config names the stage outputs it started from (``stage:`` references resolved)
        if not config_differences(json.loads(config.read_text()), stages.resolve_stages(cfg, ablation=ablation)):
            return json.loads(metrics.read_text())
        raise FileExistsError(
            f"{cfg.out_dir} holds a run of another config; move it away or pass another results folder"
        )
    stages.run(RunFolder(cfg).continuing(), progress="lines", ablation=ablation)
    return json.loads(metrics.read_text())


def measured_config(name: str, preset: str, seed: int, **kw) -> RunConfig:
    """The cached run behind record `name` (a trained method or an ablation) for `seed`."""
    entry = CATALOGUE[name]
    if entry.kind == "ablation":
        return overridden_config(name, entry.of, preset, seed, **kw)
    return stages.stage_config(resolve(name, preset, seed=seed, **kw), name)


def overridden_config(name: str, method: str, preset: str, seed: int, **kw) -> RunConfig:
    """The cached run of `method` with the overrides of entry `name` (an ablation's setting, a shift's data)."""
    over = CATALOGUE[name].overrides
    cfg = resolve(
        method,
        preset,
        seed=seed,
        **kw,
        **over.get("train", {}),
        method_overrides=over.get("method"),
        data_overrides=over.get("data"),
    )
    return stages.cached_run(cfg, name if method == CATALOGUE[name].of else f"{name}-{method}")


def _trained(cfg: RunConfig, device: torch.device) -> nn.Module:
    """The final model of a (finished or freshly trained) cached run."""
    run_once(cfg)
    return load_trained(cfg, device)


def _record(name: str, cfg: RunConfig, res: EvalResult, t0: float, device: torch.device, **extra) -> dict:
    """The stored record of an evaluated result: `res` scored for `name`, with the :class:`Record` parts in `extra`."""
    return Record(
        method=name,
        preset=cfg.preset,
        seed=cfg.train.seed,
        iters=cfg.train.iters,
        **res.to_json(),
        checkpoint="last",
        wall_s=round(time.time() - t0, 1),
        device=device.type,
        threads=torch.get_num_threads(),
        data=data_identity(cfg),
        **extra,
    ).to_dict()


def ensemble_record(name: str, preset: str, seed: int, **kw) -> dict:
    """Evaluate the members' upsampled logits averaged with equal weights (ADVENT's ``eval_single``) for one seed."""
    members = CATALOGUE[name].members
    cfgs = [measured_config(m, preset, seed, **kw) for m in members]
    device = resolve_device(cfgs[0].train.device)
    models = [_trained(c, device) for c in cfgs]
    weight = 1 / len(models)
    t0 = time.time()
    res = evaluate(
        models[0],
        build_domains(cfgs[0]).target_val_loader(),
        get_protocol(cfgs[0].data.protocol),
        device=device,
        ensemble=[(m, weight) for m in models[1:]],
    )  # the first gets 1 − the others
    return _record(name, cfgs[0], res, t0, device, members={m: weight for m in members})


def adabn_record(name: str, preset: str, seed: int, **kw) -> dict:
    """The final model of the entry's method for `seed` with BN statistics re-estimated on target train,
    evaluated on target val."""
    cfg = measured_config(CATALOGUE[name].of, preset, seed, **kw)
    device = resolve_device(cfg.train.device)
    model = _trained(cfg, device)
    t0 = time.time()
    seen = _adabn(cfg, model, device)
    val = build_domains(_images_only(cfg)).target_val_loader()
    res = evaluate(model, val, get_protocol(cfg.data.protocol), device=device)
    return _record(name, cfg, res, t0, device, adabn_images=seen)


def _images_only(cfg: RunConfig) -> RunConfig:
    """`cfg` without the pseudo-labels its method trained on: AdaBN and evaluation read target images (and val
    labels) only, and a method's ``stage:`` pseudo-label folder is not resolved here (BAFFT step 2, self-training)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, pseudo_label_dir=None))


def _adabn(cfg: RunConfig, model: nn.Module, device: torch.device) -> int:
    """Re-estimate `model`'s BN statistics on `cfg`'s target train images in place; the number of images seen."""
    loader = build_domains(_images_only(cfg)).pseudo_label_loader(batch=cfg.train.batch_target)
    return adapt_batchnorm(model, loader, device)


def shift_record(name: str, preset: str, seed: int, **kw) -> dict:
    """One record of the anatomy of a SynthCity shift: on the pair of the entry's knob settings, the source-only
    model (``miou``), the same with AdaBN (``adabn``) and the oracle trained on that pair's target (``oracle``),
    each with its per-class IoU.

    The source half of every pair is the same images (the source does not depend on the shift), so the source-only
    model is the default pair's cached stage, scored on this pair's target; only the oracle is trained per pair.
    """
    pair = overridden_config(name, "source_only", preset, seed, **kw)  # this pair's data (no run of its own)
    oracle_cfg = overridden_config(name, "oracle", preset, seed, **kw)
    device = resolve_device(pair.train.device)
    model = _trained(measured_config(CATALOGUE[name].of, preset, seed, **kw), device)
    oracle = _trained(oracle_cfg, device)
    t0 = time.time()
    protocol, val = get_protocol(pair.data.protocol), build_domains(pair).target_val_loader()
    source = evaluate(model, val, protocol, device=device)
    _adabn(pair, model, device)
    adabn = evaluate(model, val, protocol, device=device)
    part = lambda res: {k: v for k, v in res.to_json().items() if k in ("miou", "per_class_iou")}  # noqa: E731
    oracle_part = part(evaluate(oracle, val, protocol, device=device))
    return _record(name, pair, source, t0, device, adabn=part(adabn), oracle=oracle_part)


EVALUATORS = {"ensemble": ensemble_record, "adabn": adabn_record, "shift": shift_record}


def measure(name: str, preset: str, seed: int, **kw) -> dict:
    """The record of catalogue entry `name` for `seed` (training what it needs, or reusing the cache)."""
    entry = CATALOGUE[name]
    if entry.kind == "evaluated":
        return EVALUATORS[entry.how](name, preset, seed, **kw)
    cfg = measured_config(name, preset, seed, **kw)
    rec = Record.from_metrics(run_once(cfg, entry.overrides if entry.kind == "ablation" else None), cfg)
    if entry.kind == "ablation":
        rec.method, rec.ablation = name, {"of": entry.of, **entry.overrides}
    return rec.to_dict()


def record_config(name: str, preset: str, seed: int, **kw) -> RunConfig:
    """The run config a record of `name` is made with: its own (trained, ablation) or the evaluated model's."""
    entry = CATALOGUE[name]
    if entry.how == "shift":
        return overridden_config(name, entry.of, preset, seed, **kw)
    return measured_config(entry.of if entry.kind == "evaluated" else name, preset, seed, **kw)


def check_replacements(names: list[str], preset: str, seeds, results_root: str | None = None, **kw) -> list[str]:
    """Why the records of `names` × `seeds` could not replace those in `results_root` (one sentence each; none:
    every record is new or replaces one measured on the same data). Nothing is trained."""
    found = []
    for name in names:
        for seed in seeds:
            cfg = record_config(name, preset, seed, **kw)
            key = {"method": name, "preset": cfg.preset, "seed": cfg.train.seed, "iters": cfg.train.iters}
            conflict = results.replacement_conflict({**key, "data": data_identity(cfg)}, results_root)
            if conflict:
                found.append(conflict)
    return found


def reproduce(
    preset: str = "quick",
    methods: list[str] | None = None,
    seeds: list[int] = (0, 1, 2),
    *,
    results_root: str | None = None,
    data_root: str | None = None,
    target_root: str | None = None,
    replace: bool = False,
) -> list[dict]:
    """Measure `methods` (default: the whole catalogue) × `seeds` and add each record to ``results_root``.

    replace: let records replace those of the same method, seed and iterations measured on other or unknown data
    (the repository's records made before records carried their data identity); without it such a replacement is
    refused, all of them listed in one RecordConflictError, before anything is trained.
    """
    names = list(methods or CATALOGUE)
    unknown = [m for m in names if m not in CATALOGUE]
    if unknown:
        raise ValueError(f"unknown result name(s) {unknown}; expected some of {list(CATALOGUE)}")
    kw = {"data_root": data_root, "target_root": target_root}
    conflicts = [] if replace else check_replacements(names, preset, seeds, results_root, **kw)
    if conflicts:
        raise results.RecordConflictError(
            f"refusing to replace {len(conflicts)} record(s) measured on other or unknown data (nothing was "
            "trained); pass replace=True (the command line's --replace) or another results folder:\n"
            + "\n".join(f"  - {c}" for c in conflicts)
        )
    records = []
    for name in names:
        for seed in seeds:
            rec = measure(name, preset, seed, **kw)
            print(f"{name} seed {seed}: mIoU {rec['miou']:.2f}", flush=True)
            results.append_record(rec, results_root, replace=replace)
            records.append(rec)
    print(results.format_summary(results.summary(preset, names, results_root)))
    return records
