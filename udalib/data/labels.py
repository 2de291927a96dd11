"""Class tables, palettes and id→train-id maps for every protocol the book uses.

The Cityscapes table is read from ``cityscapesscripts.helpers.labels`` (the official one), never retyped.
SYNTHIA and Cross-City tables are tables here because no package ships them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from cityscapesscripts.helpers import labels as _cs

from ..config import IGNORE_INDEX

_CS_TRAIN = sorted((lab for lab in _cs.labels if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId)

#: The 19 Cityscapes training classes, in train-id order.
CITYSCAPES_CLASSES: tuple[str, ...] = tuple(lab.name for lab in _CS_TRAIN)
#: The official RGB palette, in train-id order.
CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = tuple(tuple(lab.color) for lab in _CS_TRAIN)
#: Cityscapes labelId of each train class (used by writers that emit the labelIds encoding).
CITYSCAPES_LABEL_IDS: tuple[int, ...] = tuple(lab.id for lab in _CS_TRAIN)

#: SYNTHIA-RAND-CITYSCAPES raw id → class name, for the 16 shared classes (valeo.ai DADA table).
SYNTHIA_ID_TO_NAME: dict[int, str] = {
    3: "road",
    4: "sidewalk",
    2: "building",
    21: "wall",
    5: "fence",
    7: "pole",
    15: "traffic light",
    9: "traffic sign",
    6: "vegetation",
    1: "sky",
    10: "person",
    17: "rider",
    8: "car",
    19: "bus",
    12: "motorcycle",
    11: "bicycle",
}
#: Raw SYNTHIA ids of the three classes that only the 19-class table uses.
SYNTHIA_EXTRA_19 = {16: "terrain", 18: "truck", 20: "train"}

SYNTHIA16_CLASSES: tuple[str, ...] = tuple(c for c in CITYSCAPES_CLASSES if c not in ("terrain", "truck", "train"))
#: mIoU* drops wall, fence and pole from the 16-class IoU vector.
SYNTHIA13_CLASSES: tuple[str, ...] = tuple(c for c in SYNTHIA16_CLASSES if c not in ("wall", "fence", "pole"))
#: NTHU Cross-City: the 13 classes shared with Cityscapes.
CROSSCITY_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "traffic light",
    "traffic sign",
    "vegetation",
    "sky",
    "person",
    "rider",
    "car",
    "bus",
    "motorcycle",
    "bicycle",
)


def _lut(pairs: dict[int, int], size: int = 256) -> np.ndarray:
    lut = np.full(size, IGNORE_INDEX, dtype=np.uint8)
    for src, dst in pairs.items():
        lut[src] = dst
    return lut


@dataclass(frozen=True)
class Protocol:
    """A class protocol: the classes a model predicts and how raw label ids map onto them."""

    name: str
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @cached_property
    def palette(self) -> np.ndarray:
        """(K, 3) uint8 RGB colours, Cityscapes colours of the same class names."""
        by_name = dict(zip(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE))
        return np.array([by_name[c] for c in self.classes], dtype=np.uint8)

    @cached_property
    def cityscapes_lut(self) -> np.ndarray:
        """(256,) uint8: Cityscapes/GTA5 labelId → this protocol's train id (255 elsewhere)."""
        index = {c: i for i, c in enumerate(self.classes)}
        return _lut({lab.id: index[lab.name] for lab in _CS_TRAIN if lab.name in index})

    @cached_property
    def synthia_lut(self) -> np.ndarray:
        """(65536,) uint8: raw SYNTHIA id (16-bit) → this protocol's train id (255 elsewhere)."""
        index = {c: i for i, c in enumerate(self.classes)}
        names = {**SYNTHIA_ID_TO_NAME, **SYNTHIA_EXTRA_19}
        return _lut({sid: index[n] for sid, n in names.items() if n in index}, size=65536)

    def subset_indices(self, classes: tuple[str, ...]) -> list[int]:
        """Indices of `classes` in this protocol (e.g. the 13 mIoU* classes inside the 16)."""
        return [self.classes.index(c) for c in classes]


CITYSCAPES19 = Protocol("cityscapes19", CITYSCAPES_CLASSES)
SYNTHIA16 = Protocol("synthia16", SYNTHIA16_CLASSES)
SYNTHIA13 = Protocol("synthia13", SYNTHIA13_CLASSES)
CROSSCITY13 = Protocol("crosscity13", CROSSCITY_CLASSES)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (CITYSCAPES19, SYNTHIA16, SYNTHIA13, CROSSCITY13)}
#: Which reported subsets belong to a protocol: mIoU over 16 classes also reports mIoU* over 13.
REPORTED_SUBSETS: dict[str, tuple[Protocol, ...]] = {
    "cityscapes19": (CITYSCAPES19,),
    "synthia16": (SYNTHIA16, SYNTHIA13),
    "synthia13": (SYNTHIA13,),
    "crosscity13": (CROSSCITY13,),
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown class protocol {name!r}; expected one of {sorted(PROTOCOLS)}") from None


def colorize(label: np.ndarray, protocol: Protocol = CITYSCAPES19) -> np.ndarray:
    """(H, W) train ids → (H, W, 3) uint8 RGB; 255 (ignore) renders black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: protocol.num_classes] = protocol.palette
    return lut[label.astype(np.uint8)]
