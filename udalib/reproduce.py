"""``udalib reproduce``: run methods × seeds under a preset and record each measured run in ``results/``.

Runs live in the stage cache (``udalib.pipeline.stage_config``), so the source-only runs measured here are the very
models the adaptation runs start from, and a finished run of the same config is not retrained: its metrics are
recorded again. The AdvEnt+MinEnt ensemble (ADVENT's 45.5) evaluates two trained models' logits, 0.5/0.5.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import pipeline, results
from .data.domains import build_domains
from .data.labels import get_protocol
from .evaluate import evaluate
from .methods import VARIANTS
from .pipeline import stage_config
from .presets import RunConfig, resolve, resolve_device
from .train import load_model_weights, segmenter_for

ENSEMBLE = "advent_minent_ensemble"
#: The order runs are made in: baselines first, then each chapter's methods.
ORDER = ("source_only", "oracle", "adaptsegnet_single", "adaptsegnet_multi", "adaptsegnet_ls", "minent", "advent",
         ENSEMBLE, "globallocal", "sdca", "sdca_ssl")


def _final_checkpoint(cfg: RunConfig) -> Path:
    return Path(cfg.out_dir) / f"checkpoint_{cfg.train.iters:07d}.pt"


def run_once(cfg: RunConfig) -> dict:
    """Train `cfg` unless its folder already holds the finished run of the same config; return its metrics."""
    out = Path(cfg.out_dir)
    metrics, config = out / "metrics.json", out / "config.json"
    if metrics.exists() and config.exists() and _final_checkpoint(cfg).exists():
        if json.loads(config.read_text()) == json.loads(cfg.describe()):
            return json.loads(metrics.read_text())
        raise FileExistsError(f"{out} holds a run of another config; move it away or pass another results folder")
    pipeline.run(cfg, progress="lines")
    return json.loads(metrics.read_text())


def measured_config(method: str, preset: str, seed: int, **kw) -> RunConfig:
    return stage_config(resolve(method, preset, seed=seed, **kw), method)


def ensemble_record(preset: str, seed: int, **kw) -> dict:
    """Evaluate 0.5·AdvEnt + 0.5·MinEnt upsampled logits (spec §4.3) for one seed."""
    cfgs = {m: measured_config(m, preset, seed, **kw) for m in ("advent", "minent")}
    for c in cfgs.values():
        run_once(c)
    cfg = cfgs["advent"]
    protocol = get_protocol(cfg.data.protocol)
    device = resolve_device(cfg.train.device)
    models = {}
    for m, c in cfgs.items():
        models[m] = segmenter_for(c, protocol.num_classes)
        load_model_weights(models[m], _final_checkpoint(c))
        models[m].to(device)
    t0 = time.time()
    res = evaluate(models["advent"], build_domains(cfg).target_val_loader(), protocol, device=device,
                   ensemble=[(models["minent"], 0.5)])
    return {"method": ENSEMBLE, "preset": preset, "seed": seed, "iters": cfg.train.iters, **res.to_json(),
            "checkpoint": "last", "wall_s": round(time.time() - t0, 1), "device": device.type,
            "members": {"advent": 0.5, "minent": 0.5}}


def reproduce(preset: str = "quick", methods: list[str] | None = None, seeds: list[int] = (0, 1, 2), *,
              results_root: str | None = None, data_root: str | None = None,
              target_root: str | None = None) -> list[dict]:
    methods = list(methods or ORDER)
    unknown = [m for m in methods if m not in VARIANTS and m != ENSEMBLE]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; expected some of {list(ORDER)}")
    kw = {"data_root": data_root, "target_root": target_root}
    records = []
    for method in methods:
        for seed in seeds:
            if method == ENSEMBLE:
                rec = ensemble_record(preset, seed, **kw)
            else:
                rec = results.record_from_metrics(run_once(measured_config(method, preset, seed, **kw)))
            print(f"{method} seed {seed}: mIoU {rec['miou']:.2f}", flush=True)
            results.append_record(rec, results_root)
            records.append(rec)
    print(results.format_summary(results.summary(preset, methods, results_root)))
    return records
