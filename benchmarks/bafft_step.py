"""Where BAFFT's training step spends its time at the paper's resolution: the banks and the connected components.

One step of ``bafft`` (step 2: every term on) with the paper configuration (ResNet-101 DeepLab-v2, a 1280×720 source
and a 1024×512 target image, stuff banks 8×50 and thing banks 11×500 of 2048 channels), timed whole and in parts:
the connected components of the thing classes (``instance_masks``: ``scipy.ndimage.label`` on the host, with the
copies to and from it), the banks (``FeatureBank.push`` and ``nearest_distance``) and the masked pooling. The banks
start full of random vectors, as after a long run, so every target term is computed::

    python benchmarks/bafft_step.py --device cpu --out benchmarks/bafft_step_cpu.json
    python benchmarks/bafft_step.py --device cuda --out benchmarks/bafft_step_cuda.json

``--scale 0.125 --iters 1 --warmup 0`` smoke-tests it (numbers then meaningless).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from train_step import step_setup, time_steps

from udalib.losses import feature_banks
from udalib.methods import bafft

PARTS = {
    "connected components": (bafft, "instance_masks"),
    "bank push": (feature_banks.FeatureBank, "push"),
    "bank distance": (feature_banks.FeatureBank, "nearest_distance"),
    "masked pooling": (bafft, "masked_average_pool"),
}


@contextmanager
def timed_parts(device: torch.device) -> Iterator[dict[str, float]]:
    """Wrap each function of :data:`PARTS` so that its calls add their (device-synchronised) seconds to the dict."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    spent: dict[str, float] = defaultdict(float)
    originals = {name: getattr(owner, attr) for name, (owner, attr) in PARTS.items()}

    def wrap(name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            sync()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sync()
            spent[name] += time.perf_counter() - t0
            return out

        return timed

    for name, (owner, attr) in PARTS.items():
        setattr(owner, attr, wrap(name, originals[name]))
    try:
        yield spent
    finally:
        for name, (owner, attr) in PARTS.items():
            setattr(owner, attr, originals[name])


def fill_banks(method: bafft.BAFFT) -> None:
    """Every bank full (ready) with random non-negative vectors, as the ReLU features of a long run would be."""
    g = torch.Generator().manual_seed(0)
    for bank in (method.stuff_bank, method.thing_bank):
        bank.bank.copy_(torch.rand(bank.bank.shape, generator=g))
        bank.pointer.fill_(bank.slots + 1)


def measure(device: torch.device, scale: float, iters: int, warmup: int) -> dict:
    step, sizes = step_setup("bafft", "fp32", device=device, scale=scale, prepare=fill_banks)
    for _ in range(warmup):  # outside the parts' timers, which count only the timed steps
        step()
    with timed_parts(device) as spent:
        total = time_steps(step, device, iters, warmup=0)
    parts = {name: round(s / iters, 4) for name, s in spent.items()}
    share = {name: float(f"{s / total:.3g}") for name, s in parts.items()}  # tiny on a CPU: keep digits
    return {"s_per_step": round(total, 3), "s_per_step_parts": parts, "share_of_step": share, **sizes}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--scale", type=float, default=1.0, help="image size factor (1 = the paper's resolution)")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: pass --device cpu")
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; pass another --out (results are never overwritten silently)")
    rec = measure(device, args.scale, args.iters, args.warmup)
    rec.update(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        scale=args.scale,
        iters=args.iters,
        precision="fp32",
    )
    print(json.dumps(rec, indent=1))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
