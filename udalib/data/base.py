"""What every loader shares: file pairs, reading, id mapping with unknown-id accounting, errors.

A loader module (gta5.py, cityscapes.py, ...) only knows its folder layout: a ``scan_*`` function turns a root
into a :class:`PairScan` and a :class:`LabelMap` turns raw label ids into train ids. :class:`PairedDataset` does the
rest, and ``udalib.data.check`` reuses the same scans and maps to report on a whole folder.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers import labels as _cs
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from udalib.data.labels import IGNORE_INDEX, Protocol
from udalib.data.transforms import ToTensor, resize_label
from udalib.user_error import UserError

#: Every id of the official Cityscapes labelIds encoding (0..33; license plate's -1 is stored as 255 in uint8).
CITYSCAPES_KNOWN_IDS: frozenset[int] = frozenset(lab.id % 256 for lab in _cs.labels)

Transform = Callable[[Image.Image, np.ndarray], tuple[Tensor, Tensor]]


# --------------------------------------------------------------------------------------------------- errors
class DatasetNotFoundError(FileNotFoundError):
    """The root is missing, or holds no files in the layout the loader expects (the message shows the layout)."""


class MissingLabelError(FileNotFoundError):
    """An image has no label file where the layout puts it."""


class CorruptFileError(OSError):
    """A file exists but cannot be decoded (truncated download, not an image)."""


class LabelFormatError(ValueError):
    """A label file decodes but is not in the expected encoding (8-bit SYNTHIA labels, colour-coded labels)."""


class DataError(UserError, ValueError):
    """The run's data cannot be trained on: the message lists every problem found (``udalib.data.preflight``)."""


class UnknownLabelIdWarning(UserWarning):
    """Label ids outside a dataset's table were found; they are mapped to 255 and counted."""


class SizeMismatchWarning(UserWarning):
    """An image and its label have different sizes on disk."""


def list_some(items: list[str], n: int = 5) -> str:
    """The first `n` items, comma-separated, with how many more there are (for messages)."""
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def require_dir(path: Path, dataset: str, root: Path, layout: str) -> None:
    """Raise DatasetNotFoundError naming `root` and the expected `layout` when `path` is not a directory."""
    if not path.is_dir():
        raise DatasetNotFoundError(f"{dataset} not found under {root} (no folder {path}): expected {layout}")


def require_images(images: list, where: Path, dataset: str, root: Path, layout: str) -> None:
    """Raise DatasetNotFoundError when a scan found no image in `where`."""
    if not images:
        raise DatasetNotFoundError(f"{dataset}: no images found in {where} (root {root}): expected {layout}")


# --------------------------------------------------------------------------------------------------- pairs
@dataclass(frozen=True)
class Sample:
    """One image, its label (None: unlabelled) and its name relative to the split folder (meta["name"])."""

    image: Path
    label: Path | None
    name: str


@dataclass
class PairScan:
    """What a layout scan found.

    samples: the usable items, in dataset order (label None when the split is unlabelled).
    missing: images whose label file is absent; ``label`` holds the path where the label was expected.
    labels_without_images: names of label files no image points to.
    labelled: False for splits read without labels (a target train set used unlabelled).
    """

    samples: list[Sample]
    missing: list[Sample] = field(default_factory=list)
    labels_without_images: list[str] = field(default_factory=list)
    labelled: bool = True


def scan_same_names(image_dir: Path, label_dir: Path, dataset: str, root: Path, layout: str) -> PairScan:
    """Pair ``image_dir/X.png`` with ``label_dir/X.png`` (GTA5, SYNTHIA); names are the file names, sorted."""
    require_dir(image_dir, dataset, root, layout)
    require_dir(label_dir, dataset, root, layout)
    images = sorted(p.name for p in image_dir.glob("*.png"))
    require_images(images, image_dir, dataset, root, layout)
    labels = {p.name for p in label_dir.glob("*.png")}
    pairs = [Sample(image_dir / n, label_dir / n, n) for n in images]
    return PairScan(
        samples=[s for s in pairs if s.name in labels],
        missing=[s for s in pairs if s.name not in labels],
        labels_without_images=sorted(labels - set(images)),
    )


def read_list_file(list_file: str | Path) -> list[str]:
    """Non-empty stripped lines of a list file (one relative path per line, as in the seeds' lists)."""
    path = Path(list_file)
    if not path.is_file():
        raise FileNotFoundError(f"list file {path} does not exist")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def select_listed(scan: PairScan, list_file: str | Path | None, where: str) -> PairScan:
    """Restrict a scan to the names of `list_file`, in the list's order; unknown entries raise.

    `where` describes where the listed names were looked for (e.g. "<root>/images"), for the error message.
    """
    if list_file is None:
        return scan
    names = read_list_file(list_file)
    by_name = {s.name: s for s in scan.samples + scan.missing}
    absent = [n for n in names if n not in by_name]
    if absent:
        raise DatasetNotFoundError(
            f"list file {list_file} names {len(absent)} images not found in {where}: {list_some(absent)}"
        )
    listed = [by_name[n] for n in names]
    missing = {s.name for s in scan.missing}
    return PairScan(
        samples=[s for s in listed if s.name not in missing],
        missing=[s for s in listed if s.name in missing],
        labels_without_images=scan.labels_without_images,
        labelled=scan.labelled,
    )


# --------------------------------------------------------------------------------------------------- reading
@contextmanager
def _decoding(path: Path, what: str) -> Iterator[None]:
    """Re-raise decoder errors as CorruptFileError naming the file (a missing file stays FileNotFoundError)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise CorruptFileError(f"cannot read {what} {path}: {err}") from err


def read_image(path: Path) -> Image.Image:
    """RGB PIL image, fully decoded; a corrupt file raises CorruptFileError naming it."""
    with _decoding(path, "image"), Image.open(path) as im:
        im.load()
        return im.convert("RGB")


class ImageFiles:
    """The images of a list of files, decoded on access: ``ImageFiles(paths)[i]`` is an RGB PIL image."""

    def __init__(self, paths: list[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Image.Image:
        return read_image(self.paths[i])


def image_size(path: Path, verify: bool = False, *, decode: bool = False) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels.

    verify: also check the file's structure (PNG chunks and CRCs), which catches truncated downloads.
    decode: decode every pixel instead (what a loader does; also catches a damaged pixel stream with intact chunks).
    """
    with _decoding(path, "image"), Image.open(path) as im:
        size = im.size
        if decode:
            im.load()
        elif verify:
            im.verify()
        return size


#: PIL modes of a one-channel label: 8-bit gray, palette indices (GTA5), 16-bit and 32-bit integers.
LABEL_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I")


def _require_label_mode(path: Path, mode: str) -> None:
    if mode not in LABEL_MODES:
        raise LabelFormatError(
            f"label {path} is a {mode} image: expected one channel of class ids "
            f"(a colour-coded label, such as Cityscapes' *_color.png, cannot be read as ids)"
        )


def label_size(path: Path, *, ids: bool = True) -> tuple[int, int]:
    """(width, height) of a label from its file header, without decoding the pixels.

    ids: the label must be one channel of ids (LabelFormatError otherwise, as :func:`read_label_ids` would raise);
    False for SYNTHIA's 16-bit RGB labels, whose bit depth only a decode tells.
    """
    with _decoding(path, "label"), Image.open(path) as im:
        size, mode = im.size, im.mode
    if ids:
        _require_label_mode(path, mode)
    return size


def read_label_ids(path: Path) -> np.ndarray:
    """(H, W) integer array of raw ids from a single-channel label PNG (8-bit gray, palette indices or 16-bit).

    Palette ('P') images, as GTA5 ships them, give their indices, which are the ids; colours are never read.
    """
    with _decoding(path, "label"), Image.open(path) as im:
        im.load()
        mode = im.mode
        ids = np.asarray(im) if mode in LABEL_MODES else None
    if ids is None:
        _require_label_mode(path, mode)
    return ids


# --------------------------------------------------------------------------------------------------- id maps
class LabelMap:
    """Raw label id → train id through a lookup table, counting ids the table does not know.

    lut: (S,) uint8, raw id → train id (255 = ignore).
    known: raw ids that belong to the encoding (mapped to a class or deliberately ignored, like Cityscapes'
    "unlabeled" 0). Any other id, including ids ≥ S, is *unknown*: it becomes 255 too, but is reported so that a
    wrong encoding never reaches the loss silently.
    table_name: names the encoding in messages ("label ids [40] are outside the Cityscapes labelId table").
    """

    def __init__(self, lut: np.ndarray, known: Iterable[int], table_name: str):
        self.lut = np.asarray(lut, dtype=np.uint8)
        self.known = np.zeros(len(self.lut), dtype=bool)
        self.known[list(known)] = True
        self.table_name = table_name

    @classmethod
    def from_table(cls, table: Mapping[int, int], table_name: str) -> LabelMap:
        """Every key of `table` is known; values are train ids (255 allowed: known but ignored)."""
        if any(raw < 0 for raw in table):
            raise ValueError(f"raw label ids must be >= 0, got {sorted(r for r in table if r < 0)}")
        lut = np.full(max(256, max(table, default=0) + 1), IGNORE_INDEX, dtype=np.uint8)
        for raw, train in table.items():
            lut[raw] = train
        return cls(lut, table.keys(), table_name)

    def __call__(self, raw: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
        """(train ids as uint8 of raw's shape, {unknown raw id: pixel count})."""
        size = len(self.lut)
        if raw.dtype.kind == "u" and np.iinfo(raw.dtype).max < size:  # every value indexes the lut
            counts = np.bincount(raw.ravel(), minlength=size)
            unknown = np.flatnonzero(counts * ~self.known)
            return self.lut[raw], {int(i): int(counts[i]) for i in unknown}
        flat = raw.ravel().astype(np.int64)
        inside = (flat >= 0) & (flat < size)
        out = np.full(flat.shape, IGNORE_INDEX, dtype=np.uint8)
        out[inside] = self.lut[flat[inside]]
        counts = np.bincount(flat[inside], minlength=size)
        found = {int(i): int(counts[i]) for i in np.flatnonzero(counts * ~self.known)}
        ids, n = np.unique(flat[~inside], return_counts=True)
        found.update({int(i): int(c) for i, c in zip(ids, n)})
        return out.reshape(raw.shape), found


def cityscapes_label_map(protocol: Protocol) -> LabelMap:
    """Cityscapes labelIds (also GTA5's encoding) → `protocol`'s train ids; the official table knows 0..33 and -1."""
    return LabelMap(protocol.cityscapes_lut, CITYSCAPES_KNOWN_IDS, "Cityscapes labelId")


def train_id_label_map(num_classes: int) -> LabelMap:
    """Labels already in train ids (pseudo-labels): 0..K-1 and 255 are known."""
    return LabelMap.from_table({**{i: i for i in range(num_classes)}, IGNORE_INDEX: IGNORE_INDEX}, "train-id")


# --------------------------------------------------------------------------------------------------- dataset
class PairedDataset(Dataset):
    """Base of every loader: yields ``(image, label, meta)`` from a :class:`PairScan`.

    image: float32 (3, H, W) after `transform` (default: ToTensor only, RGB in [0, 1]).
    label: int64 (H', W') train ids 0..K-1, 255 = ignore (all 255 when the split is unlabelled).
    meta:  {"name": path relative to the split folder, "index": int}.

    Raw label ids outside the dataset's table become 255 and are added to ``unknown_id_counts`` (id → pixels);
    the first such file warns once per instance. Image/label size mismatches on disk are recorded in
    ``size_mismatches``, warned once, and the label is nearest-resized to the image. With DataLoader workers these
    records stay in the worker processes: run ``udalib data check`` for a full scan.
    """

    def __init__(
        self,
        scan: PairScan,
        label_map: LabelMap,
        protocol: Protocol,
        transform: Transform | None,
        read_raw_label: Callable[[Path], np.ndarray] = read_label_ids,
    ):
        if scan.missing:
            first = scan.missing[0]
            more = f" (and {len(scan.missing) - 1} more images without labels)" if len(scan.missing) > 1 else ""
            raise MissingLabelError(f"image {first.image} has no label: expected {first.label}{more}")
        self.samples = scan.samples
        self.labelled = scan.labelled
        self.label_map = label_map
        self.protocol = protocol
        self.read_raw_label = read_raw_label
        self.transform = transform if transform is not None else ToTensor()
        self.unknown_id_counts: Counter[int] = Counter()
        self.size_mismatches: list[str] = []
        self._warned_unknown = False

    @property
    def classes(self) -> tuple[str, ...]:
        return self.protocol.classes

    @property
    def num_classes(self) -> int:
        return self.protocol.num_classes

    def __len__(self) -> int:
        return len(self.samples)

    def load_label(self, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W) uint8 train ids of item `index` at its disk resolution, or at `size` = (width, height).

        `size` is the image's size: an unlabelled item gets an all-255 label of that size, a label of another size
        is recorded as a mismatch and nearest-resized to it.
        """
        sample = self.samples[index]
        if sample.label is None:
            w, h = size if size is not None else image_size(sample.image)
            return np.full((h, w), IGNORE_INDEX, dtype=np.uint8)
        label, unknown = self.label_map(self.read_raw_label(sample.label))
        if unknown:
            self.unknown_id_counts.update(unknown)
            if not self._warned_unknown:
                self._warned_unknown = True
                warnings.warn(
                    f"{sample.label}: label ids {sorted(unknown)} are outside the "
                    f"{self.label_map.table_name} table; mapped to 255 (ignored). Later files are counted "
                    f"in .unknown_id_counts without a warning; `udalib data check` reports them all.",
                    UnknownLabelIdWarning,
                    stacklevel=3,
                )
        if size is not None and label.shape[::-1] != tuple(size):
            lw, lh = label.shape[::-1]
            message = f"{sample.name}: image {size[0]}x{size[1]} vs label {lw}x{lh}"
            if not self.size_mismatches:
                warnings.warn(
                    f"image and label sizes differ ({message}); the label is nearest-resized to the image. "
                    f"Further mismatches are listed in .size_mismatches.",
                    SizeMismatchWarning,
                    stacklevel=3,
                )
            self.size_mismatches.append(message)
            label = resize_label(label, (size[1], size[0]))
        return label

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, dict]:
        sample = self.samples[index]
        image = read_image(sample.image)
        label = self.load_label(index, image.size)
        image_t, label_t = self.transform(image, label)
        return image_t, label_t, {"name": sample.name, "index": index}
