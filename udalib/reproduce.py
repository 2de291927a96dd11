"""``udalib reproduce``: run methods × seeds under a preset and record each measured run in ``results/``.

Runs live in the stage cache (``udalib.pipeline.stage_config``), so the source-only runs measured here are the very
models the adaptation runs start from, and a finished run of the same config is not retrained: its metrics are
recorded again. Some records evaluate trained models without training: the AdvEnt+MinEnt ensemble (ADVENT's
45.5, two models' logits 0.5/0.5) and AdaBN (BatchNorm statistics re-estimated on target train, :mod:`udalib.adabn`)
applied to the source-only model, the control, and to adapted ones. Ablations retrain a method with one setting
changed and are recorded under their own names.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import torch
from torch import nn

from . import pipeline, results
from .adabn import adapt_batchnorm
from .data.domains import build_domains
from .data.labels import get_protocol
from .evaluate import EvalResult, evaluate
from .methods import VARIANTS
from .pipeline import stage_config
from .presets import RunConfig, resolve, resolve_device
from .train import load_model_weights, segmenter_for

ENSEMBLE = "advent_minent_ensemble"
ADABN = "source_only_adabn"
#: Ablations: a method trained with other settings, recorded under its own name. With ``bn_mode="frozen"`` the
#: BatchNorm layers stay in eval mode during adaptation, so target batches cannot move their statistics and what is
#: left of the gain is the method's loss alone (compare ``source_only_adabn``, the statistics alone).
#: ``globallocal_all_pixels`` scores every pixel in the local branch, as the paper preset does (slow on a CPU).
ABLATIONS: dict[str, tuple[str, dict]] = {
    **{f"{m}_frozen_bn": (m, {"bn_mode": "frozen"}) for m in ("adaptsegnet_multi", "minent", "advent")},
    "globallocal_all_pixels": ("globallocal", {"method_overrides": {"local_pixels": None}}),
}


#: The order runs are made in: baselines first, then each chapter's methods.
ORDER = ("source_only", "oracle", ADABN, "adaptsegnet_single", "adaptsegnet_multi", "adaptsegnet_ls", "minent",
         "advent", ENSEMBLE, "globallocal", "sdca_source", "sdca", "sdca_ssl", *ABLATIONS, "adaptsegnet_multi_adabn",
         "advent_adabn")


def _final_checkpoint(cfg: RunConfig) -> Path:
    return Path(cfg.out_dir) / f"checkpoint_{cfg.train.iters:07d}.pt"


def run_once(cfg: RunConfig) -> dict:
    """Train `cfg` unless its folder already holds the finished run of the same config; return its metrics."""
    out = Path(cfg.out_dir)
    metrics, config = out / "metrics.json", out / "config.json"
    if metrics.exists() and config.exists() and _final_checkpoint(cfg).exists():
        # the stored config names the stage outputs it started from (``stage:`` references resolved)
        if json.loads(config.read_text()) == json.loads(pipeline.resolve_stages(cfg).describe()):
            return json.loads(metrics.read_text())
        raise FileExistsError(f"{out} holds a run of another config; move it away or pass another results folder")
    pipeline.run(cfg, progress="lines")
    return json.loads(metrics.read_text())


def measured_config(method: str, preset: str, seed: int, **kw) -> RunConfig:
    if method in ABLATIONS:
        base, overrides = ABLATIONS[method]
        return pipeline.cached_run(resolve(base, preset, seed=seed, **kw, **overrides), method)
    return stage_config(resolve(method, preset, seed=seed, **kw), method)


def _trained(cfg: RunConfig, num_classes: int, device: torch.device) -> nn.Module:
    """The final model of a (finished or freshly trained) cached run."""
    run_once(cfg)
    model = segmenter_for(cfg, num_classes)
    load_model_weights(model, _final_checkpoint(cfg))
    return model.to(device).eval()


def _record(name: str, cfg: RunConfig, res: EvalResult, t0: float, device: torch.device, **extra) -> dict:
    return {"method": name, "preset": cfg.preset, "seed": cfg.train.seed, "iters": cfg.train.iters,
            **res.to_json(), "checkpoint": "last", "wall_s": round(time.time() - t0, 1), "device": device.type,
            **extra}


def ensemble_record(preset: str, seed: int, **kw) -> dict:
    """Evaluate 0.5·AdvEnt + 0.5·MinEnt upsampled logits (spec §4.3) for one seed."""
    cfgs = {m: measured_config(m, preset, seed, **kw) for m in ("advent", "minent")}
    cfg = cfgs["advent"]
    protocol = get_protocol(cfg.data.protocol)
    device = resolve_device(cfg.train.device)
    models = {m: _trained(c, protocol.num_classes, device) for m, c in cfgs.items()}
    t0 = time.time()
    res = evaluate(models["advent"], build_domains(cfg).target_val_loader(), protocol, device=device,
                   ensemble=[(models["minent"], 0.5)])
    return _record(ENSEMBLE, cfg, res, t0, device, members={"advent": 0.5, "minent": 0.5})


def adabn_record(preset: str, seed: int, method: str = "source_only", **kw) -> dict:
    """`method`'s final model of `seed` with BN statistics re-estimated on target train, evaluated on target val."""
    cfg = measured_config(method, preset, seed, **kw)
    protocol = get_protocol(cfg.data.protocol)
    device = resolve_device(cfg.train.device)
    model = _trained(cfg, protocol.num_classes, device)
    t0 = time.time()
    domains = build_domains(cfg)
    seen = adapt_batchnorm(model, domains.pseudo_label_loader(batch=cfg.train.batch_target), device)
    res = evaluate(model, domains.target_val_loader(), protocol, device=device)
    return _record(f"{method}_adabn", cfg, res, t0, device, adabn_images=seen)


#: Records that evaluate trained models instead of training one: the ensemble, and AdaBN applied to the
#: source-only model (the control) and to adapted models (does a method add anything to the statistics?).
EVALUATED = {ENSEMBLE: ensemble_record, **{
    f"{m}_adabn": functools.partial(adabn_record, method=m) for m in ("source_only", "adaptsegnet_multi", "advent")}}


def reproduce(preset: str = "quick", methods: list[str] | None = None, seeds: list[int] = (0, 1, 2), *,
              results_root: str | None = None, data_root: str | None = None,
              target_root: str | None = None) -> list[dict]:
    methods = list(methods or ORDER)
    unknown = [m for m in methods if m not in VARIANTS and m not in EVALUATED and m not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; expected some of {list(ORDER)}")
    kw = {"data_root": data_root, "target_root": target_root}
    records = []
    for method in methods:
        for seed in seeds:
            if method in EVALUATED:
                rec = EVALUATED[method](preset, seed, **kw)
            else:
                rec = results.record_from_metrics(run_once(measured_config(method, preset, seed, **kw)))
                if method in ABLATIONS:
                    base, overrides = ABLATIONS[method]
                    rec.update(method=method, ablation={"of": base, **overrides})
            print(f"{method} seed {seed}: mIoU {rec['miou']:.2f}", flush=True)
            results.append_record(rec, results_root)
            records.append(rec)
    print(results.format_summary(results.summary(preset, methods, results_root)))
    return records
