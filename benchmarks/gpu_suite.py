"""The GPU suite: one unattended command that measures the paper setting on a GPU and says which goals it meets.

    python benchmarks/gpu_suite.py --out-dir benchmarks/gpu            # on a CUDA machine, about 8 minutes

(a) for every method's training step at the paper's resolution (ResNet-101, 1280×720 source + 1024×512 target,
batch 1+1): iterations/s and peak memory in fp32 eager, bf16 autocast, bf16 + channels_last, and bf16 +
channels_last + ``torch.compile`` (``TrainConfig.compile``); (b) the FLOPs of one step (``torch.utils.flop_counter``)
and the model FLOP utilisation against this device's measured bf16 matmul peak; (c) real training iterations of
AdvEnt through the trainer and the PNG data loader (SynthCity written at the paper's size), and whether loading
keeps up with the synthetic-batch step; (d) ``gpu_suite.json`` and ``gpu_suite.md`` in ``--out-dir``, with each goal
marked met or not met (:data:`GOALS`; targets, not test assertions). A time budget skips what is left, saying so.

On a CPU, ``--device cpu --scale 0.125`` (the CI smoke test) runs every part at 1/8 of the size with the "eager"
compile backend (graph capture without code generation): it checks that the suite runs, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from train_step import step_setup, time_steps

from udalib.data import synthcity
from udalib.presets import resolve
from udalib.train import Trainer

#: (precision mode of benchmarks/train_step.py, compiled)
MODES = {
    "fp32": ("fp32", False),
    "bf16": ("bf16", False),
    "bf16_channels_last": ("bf16_channels_last", False),
    "bf16_channels_last_compile": ("bf16_channels_last", True),
}
METHODS = ["source_only", "adaptsegnet_multi", "minent", "advent", "globallocal", "sdca_source", "sdca"]
#: The targets the suite reports against (issue "full scale"): speed-up of bf16 + channels_last over fp32 eager,
#: model FLOP utilisation, ADVENT's 120k iterations on one GPU, peak memory of every method's step.
GOALS = {"bf16_cl_speedup": 3.0, "mfu": 0.35, "advent_120k_hours": 2.5, "peak_mem_gib": 16.0}


def step_flops(step) -> int:
    """FLOPs of one call of `step` (forward and backward, every network it runs)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def matmul_peak(device: torch.device, n: int, reps: int) -> float:
    """Measured bf16 matmul FLOP/s of this device (the MFU denominator): `reps` (n×n)·(n×n) products."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    seconds = time_steps(lambda: a @ b, device, reps, warmup=3)
    return 2 * n**3 / seconds


def bench_method(method: str, args, device: torch.device, deadline: float) -> dict:
    """Part (a) and (b) for one method: every mode's speed and memory, and the FLOPs of one step."""
    rec: dict = {"method": method, "modes": {}}
    for mode, (precision, compiled) in MODES.items():
        if time.monotonic() > deadline:
            rec["modes"][mode] = {"skipped": "time budget"}
            continue
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        backend = args.compile_backend if compiled else None
        step, sizes = step_setup(method, precision, device=device, scale=args.scale, compile_backend=backend)
        seconds = time_steps(step, device, args.iters, args.warmup)
        rec["modes"][mode] = {"it_per_s": round(1 / seconds, 3), "s_per_it": round(seconds, 4)}
        if device.type == "cuda":
            rec["modes"][mode]["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if mode == "fp32":
            rec["flops_per_step"] = step_flops(step)
            rec.update(sizes)
        del step
    return rec


def loader_run(args, device: torch.device, reference_it_s: float | None) -> dict:
    """Part (c): AdvEnt's real training loop (trainer, PNG loader, workers) on SynthCity at the paper's size."""
    s = args.scale
    size = lambda h, w: (max(16, round(h * s)), max(32, round(w * s)))  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        spec = synthcity.SynthCitySpec(
            height=size(1024, 2048)[0], width=size(1024, 2048)[1], n_source=64, n_target_train=64, n_target_val=4
        )
        root = synthcity.generate(Path(tmp) / "synthcity", spec)
        cfg = resolve("advent", "paper", dataset="synthcity", data_root=str(root), device="cuda")  # CUDA's config
        cfg = dataclasses.replace(
            cfg,
            out_dir=str(Path(tmp) / "run"),
            data=dataclasses.replace(
                cfg.data, source_size=size(720, 1280), target_size=size(512, 1024), eval_size=size(512, 1024)
            ),
            train=dataclasses.replace(
                cfg.train,
                device=str(device),
                pretrained=None,
                iters=args.loader_iters,
                eval_every=args.loader_iters,
                checkpoint_every=args.loader_iters,
                log_every=max(1, args.loader_iters // 4),
            ),
        )
        t0 = time.perf_counter()
        Trainer(cfg, progress="none").fit()
        wall = time.perf_counter() - t0
    it_s = args.loader_iters / wall  # includes start-up and the final evaluation: a lower bound
    out = {
        "iters": args.loader_iters,
        "num_workers": cfg.data.num_workers,
        "it_per_s": round(it_s, 3),
        "advent_120k_hours": round(120_000 / it_s / 3600, 2),
    }
    if reference_it_s:
        out["synthetic_it_per_s"] = reference_it_s
        out["keeps_up"] = it_s >= 0.9 * reference_it_s
    return out


def goals(report: dict) -> dict:
    """Each goal's measured value and whether it is met (None where it could not be measured)."""
    methods = [m for m in report["methods"] if "fp32" in m["modes"] and "it_per_s" in m["modes"]["fp32"]]
    speedups = [
        m["modes"]["bf16_channels_last"]["it_per_s"] / m["modes"]["fp32"]["it_per_s"]
        for m in methods
        if "it_per_s" in m["modes"].get("bf16_channels_last", {})
    ]
    mfus = [m["mfu"] for m in methods if m.get("mfu") is not None]
    peaks = [v["peak_mem_gib"] for m in methods for v in m["modes"].values() if "peak_mem_gib" in v]
    hours = report.get("loader", {}).get("advent_120k_hours")
    measured = {
        "bf16_cl_speedup": min(speedups) if speedups else None,
        "mfu": min(mfus) if mfus else None,
        "advent_120k_hours": hours,
        "peak_mem_gib": max(peaks) if peaks else None,
    }
    out = {}
    for name, target in GOALS.items():
        value = measured[name]
        at_most = name in ("advent_120k_hours", "peak_mem_gib")
        met = None if value is None else (value <= target if at_most else value >= target)
        out[name] = {"target": target, "measured": None if value is None else round(value, 3), "met": met}
    return out


def markdown(report: dict) -> str:
    lines = [
        f"# GPU suite: {report['device']} (torch {report['torch']}, scale {report['scale']})",
        "",
        "| method | " + " | ".join(MODES) + " | GFLOP/step | MFU |",
        "|---|" + "---|" * (len(MODES) + 2),
    ]
    for m in report["methods"]:
        cells = []
        for mode in MODES:
            v = m["modes"].get(mode, {})
            mem = f", {v['peak_mem_gib']} GiB" if "peak_mem_gib" in v else ""
            cells.append(f"{v['it_per_s']} it/s{mem}" if "it_per_s" in v else v.get("skipped", "-"))
        mfu = "-" if m.get("mfu") is None else f"{100 * m['mfu']:.0f}%"
        lines.append(f"| {m['method']} | " + " | ".join(cells) + f" | {m.get('flops_per_step', 0) / 1e9:.0f} | {mfu} |")
    loader = report.get("loader", {})
    if loader:
        lines += ["", f"AdvEnt through the trainer and the PNG loader: {loader}"]
    lines += ["", "| goal | target | measured | met |", "|---|---|---|---|"]
    lines += [f"| {k} | {g['target']} | {g['measured']} | {g['met']} |" for k, g in report["goals"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--scale", type=float, default=1.0, help="image size factor (1 = the paper's resolution)")
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--iters", type=int, default=10, help="timed steps per method and mode")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens there)")
    p.add_argument("--loader-iters", type=int, default=200, help="real AdvEnt iterations through the loader")
    p.add_argument("--compile-backend", default=None, help="default: inductor on CUDA, eager on a CPU")
    p.add_argument("--budget-s", type=float, default=420, help="skip modes left after this many seconds")
    p.add_argument("--out-dir", default="benchmarks/gpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: use --device cpu --scale 0.125 for the smoke test")
    args.compile_backend = args.compile_backend or ("inductor" if device.type == "cuda" else "eager")
    out = Path(args.out_dir)
    if (out / "gpu_suite.json").exists():
        raise SystemExit(f"{out / 'gpu_suite.json'} exists; pass another --out-dir (results are never overwritten)")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    start = time.monotonic()
    peak = matmul_peak(device, 8192 if device.type == "cuda" else 512, 20 if device.type == "cuda" else 3)
    report: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "scale": args.scale,
        "compile_backend": args.compile_backend,
        "bf16_matmul_peak_tflops": round(peak / 1e12, 2),
        "methods": [],
    }
    for method in args.methods:
        rec = bench_method(method, args, device, deadline=start + args.budget_s)
        best = max((v["it_per_s"] for v in rec["modes"].values() if "it_per_s" in v), default=None)
        rec["mfu"] = None if best is None else round(rec["flops_per_step"] * best / peak, 4)
        print(json.dumps(rec), flush=True)
        report["methods"].append(rec)
    advent = next((m for m in report["methods"] if m["method"] == "advent"), None)
    reference = None if advent is None else advent["modes"].get("bf16_channels_last", {}).get("it_per_s")
    report["loader"] = loader_run(args, device, reference)
    report["goals"] = goals(report)
    report["wall_s"] = round(time.monotonic() - start, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_suite.json").write_text(json.dumps(report, indent=1))
    (out / "gpu_suite.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
