"""Infinite, deterministic batch streams: a resumed run sees exactly the batches an uninterrupted one would.

A stream is a pure function of (dataset size, seed, start): the trainer restarts it at ``step × batch`` after a
resume. Uniform streams draw seeded permutations epoch after epoch (:class:`StepSampler`); class-balanced ones
continue a :class:`~udalib.data.sampling.ClassBalancedSampler` draw after draw (:class:`ResumableDraws`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from .sampling import ClassBalancedSampler


@dataclass
class Batch:
    """A collated batch: image (B, 3, H, W), label (B, H, W) train ids with 255 = ignore, meta of each item."""

    image: Tensor
    label: Tensor
    meta: dict[str, Any]

    def to(self, device: torch.device, channels_last: bool = False) -> Batch:
        image = self.image.to(device, non_blocking=True)
        if channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return Batch(image, self.label.to(device, non_blocking=True), self.meta)


class StepSampler(Sampler[int]):
    """Infinite stream of indices: epoch e is a permutation seeded by (seed, e); it starts at sample `start`."""

    def __init__(self, n: int, seed: int, start: int = 0, shuffle: bool = True):
        if n == 0:
            raise ValueError("cannot sample from an empty dataset")
        self.n, self.seed, self.start, self.shuffle = n, seed, start, shuffle

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.n)
        while True:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
            yield from order[offset:]
            epoch, offset = epoch + 1, 0


class ResumableDraws(Sampler[int]):
    """Endless class-balanced draws (one sampler "epoch" after another) starting at draw `start`."""

    def __init__(self, base: ClassBalancedSampler, start: int = 0):
        self.base, self.start = base, start

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.base.num_samples)
        while True:
            for i, (_, index) in enumerate(self.base.draws(epoch)):
                if i >= offset:
                    yield index
            epoch, offset = epoch + 1, 0


def _seed_worker(worker_id: int) -> None:
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def infinite_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    seed: int,
    start_step: int,
    num_workers: int,
    sampler: Sampler | None = None,
    pin_memory: bool = False,
) -> Iterator[Batch]:
    """Batches of `dataset` forever, from batch `start_step` of the stream (uniform unless `sampler` is given)."""
    sampler = sampler or StepSampler(len(dataset), seed, start_step * batch_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=True,
        pin_memory=pin_memory,
        worker_init_fn=_seed_worker,
        persistent_workers=num_workers > 0,
    )
    for image, label, meta in loader:
        yield Batch(image, label, meta)
