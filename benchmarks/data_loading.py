"""Data loading per CPU core: decoding, resizing and augmenting GTA5- and Cityscapes-sized PNGs, written as JSON.

    python benchmarks/data_loading.py --out benchmarks/data_loading.json

For a GTA5-sized (1914×1052) and a Cityscapes-sized (2048×1024) PNG (SynthCity scenes rendered at those sizes), on
one thread: the PNG decode alone with PIL (the loader's ``read_image``) and with ``torchvision.io.decode_png`` (the
same pixels: PNG is lossless), and the loader's whole item (decode, resize to the paper's training size, flip,
colour augmentation for SDCA's source, tensor and normalisation). Reports images/s per core and how many loader
workers keep a GPU step of 0.1 s fed (one source and one target image per step). Timings on a shared machine vary;
the decode paths are timed side by side in the same run, so their ratio is the robust figure.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from udalib.data.base import read_image
from udalib.data.synthcity import SynthCitySpec, render_item
from udalib.data.transforms import train_transform

SIZES = {"gta5": (1052, 1914), "cityscapes": (1024, 2048)}  # (height, width) of the datasets' images
TRAIN_SIZES = {"gta5": (720, 1280), "cityscapes": (512, 1024)}  # the paper preset's training sizes


def _per_image(fn, paths: list[Path], reps: int) -> float:
    """Seconds per image of `fn(path)`, the best of `reps` passes over `paths` (the least disturbed one)."""
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        best = min(best, (time.perf_counter() - t0) / len(paths))
    return best


def _decode_torchvision(path: Path) -> torch.Tensor:
    return torchvision.io.decode_png(torchvision.io.read_file(str(path)))


def measure(name: str, folder: Path, n: int, reps: int, step_s: float) -> dict:
    h, w = SIZES[name]
    paths = []
    for i in range(n):
        image, _ = render_item(SynthCitySpec(height=h, width=w), "target", "val", i)
        paths.append(folder / f"{name}_{i}.png")
        Image.fromarray(image).save(paths[-1])
    for path in paths:  # the same pixels either way
        assert np.array_equal(np.asarray(read_image(path)), _decode_torchvision(path).permute(1, 2, 0).numpy())
    label = np.zeros((h, w), dtype=np.uint8)
    pipelines = {
        "item": train_transform(size=TRAIN_SIZES[name], normalization="caffe_bgr", flip=True),
        "item_sdca_color_aug": train_transform(size=TRAIN_SIZES[name], normalization="imagenet_rgb", color_aug=True),
    }
    out = {
        "image_size": [h, w],
        "train_size": list(TRAIN_SIZES[name]),
        "decode_pil_s": _per_image(read_image, paths, reps),
        "decode_torchvision_s": _per_image(_decode_torchvision, paths, reps),
    }
    for key, transform in pipelines.items():
        out[f"{key}_s"] = _per_image(lambda p, t=transform: t(read_image(p), label), paths, reps)
    out["decode_speedup_torchvision"] = out["decode_pil_s"] / out["decode_torchvision_s"]
    out["images_per_s_per_core"] = 1 / out["item_s"]
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--step-s", type=float, default=0.1, help="GPU step time the loader has to keep up with")
    p.add_argument("--out", default="benchmarks/data_loading.json")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; pass another --out (results are never overwritten silently)")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = {name: measure(name, Path(tmp), args.images, args.reps, args.step_s) for name in SIZES}
    per_step = rows["gta5"]["item_s"] + rows["cityscapes"]["item_s"]  # one source and one target image
    report = {
        "cpu": platform.processor() or platform.machine(),
        "threads_per_worker": 1,
        "datasets": rows,
        "step_s": args.step_s,
        "workers_for_step": math.ceil(per_step / args.step_s),
        "note": "seconds per image on one core, best of the passes; a shared machine makes absolute times noisy",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
