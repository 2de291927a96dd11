"""Training-step throughput and peak memory of the ``paper`` setting, written as JSON.

ResNet-101 DeepLab-v2, one 1280×720 source + one 1024×512 target image (batch 1+1), images rendered by SynthCity
at full resolution, for each precision mode: fp32 eager, bf16 autocast, bf16 autocast + channels_last.
Runs a method's real training step (discriminators and all) with the trainer's optimiser:

    python benchmarks/train_step.py --methods source_only adaptsegnet_multi advent --out benchmarks/train_step.json

On a machine without CUDA, ``--device cpu --scale 0.125 --iters 2`` checks that the script runs (numbers are
then meaningless and are labelled with the device).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from udalib import methods
from udalib.data.streams import Batch
from udalib.data.synthcity import SynthCitySpec, render_item
from udalib.models.trained import build_segmenter
from udalib.presets import resolve

MODES = {"fp32": (None, False), "bf16": (torch.bfloat16, False), "bf16_channels_last": (torch.bfloat16, True)}


def _batch(size: tuple[int, int], domain: str, device: torch.device, channels_last: bool) -> Batch:
    image, label = render_item(SynthCitySpec(height=size[0], width=size[1]), domain, "train", 0)
    x = _caffe(image)[None].to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return Batch(x, torch.from_numpy(label.astype(np.int64))[None].to(device), {})


def _caffe(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 → BGR minus the DeepLab mean, no /255 (the seeds' input convention)."""
    bgr = image[..., ::-1].astype(np.float32) - np.array([104.00698793, 116.66876762, 122.67891434], np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr)).permute(2, 0, 1)


def step_setup(
    method: str,
    mode: str,
    *,
    device: torch.device,
    scale: float,
    compile_backend: str | None = None,
    prepare: Callable[[methods.Method], None] | None = None,
) -> tuple[Callable[[], None], dict]:
    """One training step of `method`'s paper configuration on fixed batches, as a callable, and the image sizes.

    `mode` is a key of :data:`MODES`; `compile_backend` runs the segmenter through ``torch.compile`` with that
    backend (as ``TrainConfig.compile`` does); `prepare` gets the built method first (e.g. to fill its state as a
    long run would have)."""
    dtype, channels_last = MODES[mode]
    # the paper preset's model and method config; no data is read and no CUDA is needed to resolve it
    cfg = resolve(method, "paper", data_root="unused", target_root="unused", device="cuda")
    torch.manual_seed(0)
    model = build_segmenter(dataclasses.replace(cfg.train, pretrained=None), 19).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    m = methods.build_method(
        method, cfg.method_cfg, 19, feature_dim=model.feature_channels, total_iters=cfg.train.iters
    ).to(device)
    if prepare is not None:
        prepare(m)
    groups = [{"params": g["params"], "lr": 2.5e-4 * g["lr_mult"]} for g in model.parameter_groups()]
    opt = torch.optim.SGD(groups, lr=2.5e-4, momentum=0.9, weight_decay=5e-4)
    src_size = (round(720 * scale), round(1280 * scale))
    tgt_size = (round(512 * scale), round(1024 * scale))
    src = _batch(src_size, "source", device, channels_last)
    tgt = _batch(tgt_size, "target", device, channels_last)
    stepped = model if compile_backend is None else torch.compile(model, backend=compile_backend)
    model.train()

    def step() -> None:
        for o in (opt, *m.aux_optimizers()):
            o.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            m.training_step(stepped, src, tgt if m.uses_target else None, 0, lambda loss: loss.backward())
        for o in (opt, *m.aux_optimizers()):
            o.step()

    return step, {"source_size": list(src_size), "target_size": list(tgt_size), "batch": "1+1"}


def time_steps(step: Callable[[], None], device: torch.device, iters: int, warmup: int) -> float:
    """Seconds per call of `step` after `warmup` untimed calls (compilation happens there), device synchronised."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    return (time.perf_counter() - t0) / iters


def bench(method: str, mode: str, *, device: torch.device, scale: float, iters: int, warmup: int) -> dict:
    step, sizes = step_setup(method, mode, device=device, scale=scale)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    dt = time_steps(step, device, iters, warmup)
    rec = {"method": method, "mode": mode, "it_per_s": round(1 / dt, 3), "s_per_it": round(dt, 4), **sizes}
    rec["iters"] = iters
    if device.type == "cuda":
        rec["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return rec


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["source_only", "adaptsegnet_multi", "advent"])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--device", default="cuda")
    p.add_argument("--scale", type=float, default=1.0, help="image size factor (1 = the paper's resolution)")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", default="benchmarks/train_step.json")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA device: this benchmark measures the GPU (use --device cpu --scale 0.125 to smoke-test)"
        )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; pass another --out (results are never overwritten silently)")
    records = []
    for method in args.methods:
        for mode in args.modes:
            rec = bench(method, mode, device=device, scale=args.scale, iters=args.iters, warmup=args.warmup)
            print(json.dumps(rec), flush=True)
            records.append(rec)
    meta = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "scale": args.scale,
        "records": records,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
