"""GTA5 (Richter, Vineet, Roth, Koltun, "Playing for Data: Ground Truth from Computer Games", ECCV 2016).

24,966 frames rendered from the game, labelled in the Cityscapes labelIds encoding (uint8 palette PNGs whose indices
are the ids). Most frames are 1914×1052, some are not, and a few images differ in size from their own label:
the loader warns and lists them in ``size_mismatches``; ``udalib data check`` lists them all.
"""

from __future__ import annotations

from pathlib import Path

from udalib.data.base import (
    PairedDataset,
    PairScan,
    Transform,
    cityscapes_label_map,
    scan_same_names,
    select_listed,
)
from udalib.data.labels import CITYSCAPES19, Protocol

LAYOUT = "{root}/images/NNNNN.png and {root}/labels/NNNNN.png (Cityscapes labelIds)"


def scan_gta5(root: str | Path, list_file: str | Path | None = None) -> PairScan:
    """Pairs ``images/X.png`` with ``labels/X.png``; names are the file names ("00001.png"), sorted."""
    root = Path(root)
    scan = scan_same_names(root / "images", root / "labels", "GTA5", root, LAYOUT.format(root=root))
    return select_listed(scan, list_file, f"{root}/images")


class GTA5(PairedDataset):
    """GTA5 source domain: ``images/NNNNN.png`` + ``labels/NNNNN.png`` → train ids of `protocol`.

    Example::

        ds = GTA5("data/gta5", train_transform(size=(720, 1280), normalization="caffe_bgr"))
        image, label, meta = ds[0]   # (3, 720, 1280) float32, (720, 1280) int64, {"name": "00001.png", ...}
    """

    def __init__(
        self,
        root: str | Path,
        transform: Transform | None = None,
        protocol: Protocol = CITYSCAPES19,
        list_file: str | Path | None = None,
    ):
        self.root = Path(root)
        super().__init__(scan_gta5(root, list_file), cityscapes_label_map(protocol), protocol, transform)
