"""Infinite, deterministic batch streams: a resumed run sees exactly the batches an uninterrupted one would.

A stream is a pure function of (dataset size, seed, start): the trainer restarts it at ``step × batch`` after a
resume. Uniform streams draw seeded permutations epoch after epoch (:class:`StepSampler`); class-balanced ones
continue a :class:`~udalib.data.sampling.ClassBalancedSampler` draw after draw (:class:`ResumableDraws`). Both
yield (draw number, index) pairs, and each item's random augmentation is seeded by (stream seed, draw number)
(:class:`SeededItems`): neither a resume, nor loader workers, nor the training step's own use of the global RNG
changes which crop, flip or colour jitter an item gets.
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


class StepSampler(Sampler[tuple[int, int]]):
    """Infinite stream of (draw number, index): epoch e is a permutation seeded by (seed, e); it starts at draw
    `start`."""

    def __init__(self, n: int, seed: int, start: int = 0, shuffle: bool = True):
        if n == 0:
            raise ValueError("cannot sample from an empty dataset")
        self.n, self.seed, self.start, self.shuffle = n, seed, start, shuffle

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.n)
        while True:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
            for i in range(offset, self.n):
                yield epoch * self.n + i, order[i]
            epoch, offset = epoch + 1, 0


class ResumableDraws(Sampler[tuple[int, int]]):
    """Endless class-balanced (draw number, index) pairs (one sampler "epoch" after another) from draw `start`."""

    def __init__(self, base: ClassBalancedSampler, start: int = 0):
        self.base, self.start = base, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.base.num_samples)
        while True:
            for i, (_, index) in enumerate(self.base.draws(epoch)):
                if i >= offset:
                    yield epoch * self.base.num_samples + i, index
            epoch, offset = epoch + 1, 0


class SeededItems(Dataset):
    """`dataset` read by (draw number, index) keys, each item's transform run under the torch RNG seeded by
    (seed, draw number) and the caller's RNG state left as it was."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        draw, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + draw)
            return self.dataset[index]


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
        SeededItems(dataset, seed),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=True,
        pin_memory=pin_memory,
        worker_init_fn=_seed_worker,
        persistent_workers=num_workers > 0,
        # its iterator's worker seed comes from this generator: drawn from the global RNG it would move the RNG a
        # resumed run has just restored, so that the methods' own draws (global-local's pixels) would differ
        generator=torch.Generator().manual_seed(seed),
    )
    for image, label, meta in loader:
        yield Batch(image, label, meta)
