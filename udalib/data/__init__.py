"""Datasets, label protocols, paired transforms, class-balanced sampling and the dataset checker.

Every dataset yields ``(image, label, meta)``: image float32 (3, H, W) normalised by its transform, label int64
(H', W') train ids with 255 = ignore, meta ``{"name": path relative to the split folder, "index": int}``.
:func:`build_dataset` builds one by name; the data chapter walks through each loader.
"""

from __future__ import annotations

from pathlib import Path

from udalib.data.base import (
    CorruptFileError,
    DatasetNotFoundError,
    LabelFormatError,
    LabelMap,
    MissingLabelError,
    PairedDataset,
    SizeMismatchWarning,
    UnknownLabelIdWarning,
)
from udalib.data.check import CheckReport, check_dataset, format_report
from udalib.data.cityscapes import Cityscapes
from udalib.data.crosscity import CrossCity
from udalib.data.folder import FolderPair
from udalib.data.gta5 import GTA5
from udalib.data.labels import (
    CITYSCAPES19,
    CROSSCITY13,
    IGNORE_INDEX,
    SYNTHIA13,
    SYNTHIA16,
    Protocol,
    colorize,
    get_protocol,
)
from udalib.data.sampling import ClassBalancedSampler, class_presence
from udalib.data.synthia import SYNTHIA
from udalib.data.transforms import Normalize, denormalize, eval_transform, train_transform

DATASETS = ("gta5", "cityscapes", "synthia", "crosscity", "folder")


def _no_split(name: str, split: str | None) -> None:
    if split not in (None, "train", "all"):
        raise ValueError(f"{name} has no official splits (got split={split!r}); select images with list_file=")


def build_dataset(
    name: str, root: str | Path, split: str | None = None, transform=None, protocol: Protocol | str | None = None, **kw
) -> PairedDataset:
    """Build a dataset by name: "gta5", "cityscapes", "synthia", "crosscity" or "folder".

    split: Cityscapes "train"/"val", Cross-City "train"/"test" (with ``city=``); GTA5 and SYNTHIA take None (or
    "train"/"all") and a ``list_file=``. "folder" reads ``<root>[/<split>]/images``, ``labels`` and ``id_map.json``
    (or ``id_map=``). protocol: a Protocol or its name; None = the dataset's default. Other keywords go to the class.
    """
    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    if protocol is not None and name != "folder":
        kw["protocol"] = protocol
    if name == "gta5":
        _no_split("GTA5", split)
        return GTA5(root, transform, **kw)
    if name == "synthia":
        _no_split("SYNTHIA", split)
        return SYNTHIA(root, transform, **kw)
    if name == "cityscapes":
        return Cityscapes(root, split or "train", transform, **kw)
    if name == "crosscity":
        if "city" not in kw:
            raise ValueError("crosscity needs city= (Rio, Rome, Taipei or Tokyo)")
        return CrossCity(root, kw.pop("city"), split or "train", transform, **kw)
    if name == "folder":
        base = Path(root) / split if split else Path(root)
        classes = protocol.classes if protocol is not None else kw.pop("classes", None)  # names of the id map
        return FolderPair.from_root(base, transform, id_map=kw.pop("id_map", None), classes=classes, **kw)
    raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")


__all__ = [
    "CITYSCAPES19",
    "CROSSCITY13",
    "DATASETS",
    "GTA5",
    "IGNORE_INDEX",
    "SYNTHIA",
    "SYNTHIA13",
    "SYNTHIA16",
    "CheckReport",
    "Cityscapes",
    "ClassBalancedSampler",
    "CorruptFileError",
    "CrossCity",
    "DatasetNotFoundError",
    "FolderPair",
    "LabelFormatError",
    "LabelMap",
    "MissingLabelError",
    "Normalize",
    "PairedDataset",
    "Protocol",
    "SizeMismatchWarning",
    "UnknownLabelIdWarning",
    "build_dataset",
    "check_dataset",
    "class_presence",
    "colorize",
    "denormalize",
    "eval_transform",
    "format_report",
    "get_protocol",
    "train_transform",
]
