"""Peak RAM of pseudo-labelling against the number of images, at Cityscapes' full label resolution.

The official SDCA script keeps every pixel's confidence of the whole target set in memory to take class-wise
medians (about 25 GB for Cityscapes train); ``udalib.pseudo_labels`` streams per-class histograms, so its peak
should not grow with the number of images. This script measures it: it renders a SynthCity target set at
1024×2048 (once, into ``--data``), then pseudo-labels the first N images for each N of ``--images`` in a fresh
process and records that process's peak resident memory:

    python benchmarks/pseudo_label_memory.py --data /tmp/synthcity-full --images 100 500 \\
        --checkpoint ~/.cache/udabook/stages/source_only-*/checkpoint_0000500.pt \
        --out benchmarks/pseudo_label_memory.json

The network is the quick preset's small model (the memory in question is the label-size probability maps, not
the network); without ``--checkpoint`` it is randomly initialised, which changes the thresholds, not the memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from udalib.data.domains import build_domains, target_label_size
from udalib.data.labels import get_protocol
from udalib.data.synthcity import SynthCitySpec, generate
from udalib.models.trained import build_segmenter, load_weights
from udalib.presets import resolve
from udalib.pseudo_labels import generate_pseudo_labels


def measure(data: Path, n: int, checkpoint: str | None, batch: int) -> dict:
    """Pseudo-label the first `n` target-train images of `data` in this process; report peak RSS."""
    cfg = resolve("source_only", "quick", data_root=str(data), device="cpu")
    protocol = get_protocol(cfg.data.protocol)
    model = build_segmenter(cfg.train, protocol.num_classes)
    if checkpoint:
        load_weights(model, checkpoint)
    loader = build_domains(cfg).pseudo_label_loader(batch=batch)
    if n > len(loader.dataset):
        raise ValueError(f"--images {n}: {data} holds only {len(loader.dataset)} target-train images")
    loader = DataLoader(Subset(loader.dataset, range(n)), batch_size=batch, shuffle=False)
    label_size = target_label_size(cfg)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        stats = generate_pseudo_labels(model, loader, out, num_classes=protocol.num_classes, label_size=label_size)
    return {
        "images": n,
        "label_size": list(label_size),
        "batch": batch,
        "wall_s": round(time.perf_counter() - t0, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        "rss_before_mib": rss_before / 1024,
        "kept_fraction": round(float(stats["kept_fraction_all"]), 4),
        # what holding one float32 confidence per pixel for the whole set takes (the official script's way)
        "all_confidences_mib": n * label_size[0] * label_size[1] * 4 / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="SynthCity folder (rendered there at --size if absent)")
    ap.add_argument("--images", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--size", type=int, nargs=2, default=[1024, 2048], metavar=("H", "W"))
    ap.add_argument("--checkpoint", default=None, help="a udalib checkpoint of the quick small model")
    ap.add_argument("--batch", type=int, default=4, help="the pipeline's pseudo-label batch")
    ap.add_argument("--out", default=None, help="JSON file (refused if it exists)")
    ap.add_argument("--measure", type=int, default=None, help=argparse.SUPPRESS)  # child process: one N
    args = ap.parse_args()

    if args.measure is not None:
        print(json.dumps(measure(Path(args.data), args.measure, args.checkpoint, args.batch)))
        return
    if args.out and Path(args.out).exists():
        raise SystemExit(f"{args.out} exists; choose another --out (results are never overwritten)")
    t0 = time.perf_counter()
    h, w = args.size
    generate(args.data, SynthCitySpec(height=h, width=w, n_source=1, n_target_train=max(args.images), n_target_val=1))
    render_s = time.perf_counter() - t0
    runs = []
    for n in args.images:  # a fresh process per N: ru_maxrss is a high-water mark
        cmd = [sys.executable, __file__, "--data", args.data, "--measure", str(n), "--batch", str(args.batch)]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    report = {
        "benchmark": "pseudo_label_memory",
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "render_s": round(render_s, 1),
        "checkpoint": args.checkpoint,
        "runs": runs,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
