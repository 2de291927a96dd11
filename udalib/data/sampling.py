"""Class-balanced source sampling (FADA, Wang et al. ECCV 2020; used by SDCA, ``core/datasets/gtav.py``).

Rare classes (train, motorcycle) appear in few source images, so uniform sampling rarely shows them. FADA draws a
class first, then an image that contains it. Within a sub-epoch of `sub_epoch` draws, every drawn image adds 1 to
the count of each class it contains; with freq_c the share of class c in those counts (0 at the start of a
sub-epoch),

    w_c = 1 / log(1.01 + freq_c),    P(c) = w_c / Σ_k w_k,

so classes seen little in this sub-epoch are drawn more. The image is the next one, round-robin over a shuffled
per-class list, that contains c. Classes present in no image are never drawn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def class_presence(dataset, num_classes: int | None = None) -> np.ndarray:
    """(N, K) bool: does image i contain class c? One pass over the labels at their disk resolution.

    Uses ``dataset.load_label`` when the dataset has it (no image decoding), else ``dataset[i][1]``.
    Cache the result yourself (``np.save``): a full GTA5 scan takes minutes.
    """
    k = num_classes if num_classes is not None else dataset.num_classes
    presence = np.zeros((len(dataset), k), dtype=bool)
    for i in range(len(dataset)):
        label = dataset.load_label(i) if hasattr(dataset, "load_label") else np.asarray(dataset[i][1])
        presence[i] = np.bincount(label.ravel(), minlength=256)[:k] > 0
    return presence


def _as_presence(label_index: Sequence[set[int]] | np.ndarray) -> np.ndarray:
    if isinstance(label_index, np.ndarray):
        if label_index.ndim != 2:
            raise ValueError(f"presence matrix must be (N, K), got shape {label_index.shape}")
        return label_index.astype(bool)
    k = max((max(s) for s in label_index if s), default=-1) + 1
    presence = np.zeros((len(label_index), k), dtype=bool)
    for i, classes in enumerate(label_index):
        presence[i, list(classes)] = True
    return presence


class ClassBalancedSampler(Sampler[int]):
    """Yields `num_samples` dataset indices by FADA's class-balanced rule (module docstring).

    label_index: per image the set of classes it contains, or an (N, K) bool matrix (see :func:`class_presence`).
    seed: the draws of the e-th iteration over the sampler depend only on (seed, e), so runs are reproducible.
    """

    def __init__(
        self, label_index: Sequence[set[int]] | np.ndarray, num_samples: int, sub_epoch: int = 3000, seed: int = 0
    ):
        self.presence = _as_presence(label_index)
        self.per_class = [np.flatnonzero(col) for col in self.presence.T]
        if not any(len(ix) for ix in self.per_class):
            raise ValueError("no image contains any class: the presence matrix is empty")
        self.num_samples, self.sub_epoch, self.seed = num_samples, sub_epoch, seed
        self._epoch = 0

    def __len__(self) -> int:
        return self.num_samples

    def draws(self, epoch: int = 0) -> Iterator[tuple[int, int]]:
        """(class, image index) pairs of iteration `epoch`: the chosen class and the image drawn for it."""
        rng = np.random.default_rng((self.seed, epoch))
        k = self.presence.shape[1]
        available = np.array([len(ix) > 0 for ix in self.per_class])
        queues = [rng.permutation(ix) for ix in self.per_class]
        cursor = np.zeros(k, dtype=np.int64)
        counts = np.zeros(k)
        for t in range(self.num_samples):
            if t % self.sub_epoch == 0:
                counts[:] = 0
            freq = counts / counts.sum() if counts.any() else counts
            weights = np.where(available, 1.0 / np.log(1.01 + freq), 0.0)
            cumulative = np.cumsum(weights)
            c = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            if cursor[c] == len(queues[c]):  # this class's list is used up: reshuffle it
                queues[c], cursor[c] = rng.permutation(queues[c]), 0
            index = int(queues[c][cursor[c]])
            cursor[c] += 1
            counts += self.presence[index]
            yield c, index

    def __iter__(self) -> Iterator[int]:
        epoch, self._epoch = self._epoch, self._epoch + 1
        return (index for _, index in self.draws(epoch))
