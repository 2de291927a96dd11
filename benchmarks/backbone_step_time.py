"""Training-step time of a ResNet-18-like enlargement of the quick backbone against the small one, on this CPU.

The quick preset's :class:`~udalib.models.small.SmallDeepLab` has one residual block per stage (widths 32, 64, 96,
128). The ResNet-18-like network keeps its strides, dilations and heads and takes ResNet-18's stages: two blocks per
stage, widths 64, 128, 256, 512. Both take the quick preset's source step (batch 8 at 64×128, cross-entropy on
128×256 labels, SGD with momentum); the two are timed in alternation, so load on the machine falls on both alike,
and the ratio of the medians is written with the thread count:

    OMP_NUM_THREADS=1 python benchmarks/backbone_step_time.py --out benchmarks/backbone_step_time.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from udalib.losses.segmentation import seg_ce
from udalib.models.small import BasicBlock, SmallDeepLab

RESNET18_WIDTHS = (64, 128, 256, 512)


class ResNet18LikeDeepLab(SmallDeepLab):
    """SmallDeepLab with ResNet-18's stages: two blocks each, widths 64-512, the same strides and dilations."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes, channels=RESNET18_WIDTHS)
        c1, c2, c3, c4 = RESNET18_WIDTHS
        self.layer1 = nn.Sequential(self.layer1, BasicBlock(c1, c1))
        self.layer2 = nn.Sequential(self.layer2, BasicBlock(c2, c2))
        self.layer3 = nn.Sequential(self.layer3, BasicBlock(c3, c3, dilation=2))
        self.layer4 = nn.Sequential(self.layer4, BasicBlock(c4, c4, dilation=4))


def training_step(model: nn.Module, batch: int, size: tuple[int, int]) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn((batch, 3, *size), generator=gen)
    labels = torch.randint(19, (batch, 2 * size[0], 2 * size[1]), generator=gen)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()

    def step() -> None:
        out = model(images)
        loss = seg_ce(out.logits, labels) + 0.1 * seg_ce(out.aux_logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per network, after 3 warm-up steps")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    size = (64, 128)
    torch.manual_seed(0)
    models = {"small": SmallDeepLab(19), "resnet18_like": ResNet18LikeDeepLab(19)}
    steps = {name: training_step(model, args.batch, size) for name, model in models.items()}
    for step in steps.values():
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    record = {
        "what": "median seconds per training step, batch 8 at 64x128 (the quick preset's source step), interleaved",
        "parameters": {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()},
        "seconds_per_step": {name: round(value, 4) for name, value in medians.items()},
        "ratio_resnet18_like_to_small": round(medians["resnet18_like"] / medians["small"], 2),
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(record, indent=2))
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
