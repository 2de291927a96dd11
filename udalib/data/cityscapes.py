"""Cityscapes (Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene Understanding", CVPR 2016).

The target domain of every benchmark: 2,975 train and 500 val images (frankfurt, lindau, munster) at 2048×1024,
fine labels in the labelIds encoding, mapped to train ids with the official table (cityscapesscripts).
"""

from __future__ import annotations

from pathlib import Path

from udalib.data.base import (
    PairedDataset,
    PairScan,
    Sample,
    Transform,
    cityscapes_label_map,
    require_dir,
    require_images,
    select_listed,
    train_id_label_map,
)
from udalib.data.labels import CITYSCAPES19, Protocol

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
#: What the pseudo-labelling module writes: ``<pseudo_label_dir>/<city>/<stem>_pseudo_trainIds.png`` (uint8 train ids).
PSEUDO_SUFFIX = "_pseudo_trainIds.png"
SPLITS = ("train", "val")
LAYOUT = (
    "{root}/leftImg8bit/{split}/<city>/*_leftImg8bit.png with labels in "
    "{root}/gtFine/{split}/<city>/*_gtFine_labelIds.png (archives leftImg8bit_trainvaltest.zip and "
    "gtFine_trainvaltest.zip from cityscapes-dataset.com)"
)


def _stem(name: str) -> str:
    """ "aachen/aachen_000000_000019_leftImg8bit.png" → "aachen/aachen_000000_000019"."""
    return name[: -len(IMAGE_SUFFIX)]


def scan_cityscapes(
    root: str | Path, split: str, list_file: str | Path | None = None, pseudo_label_dir: str | Path | None = None
) -> PairScan:
    """Pairs each ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` with its label, sorted by "<city>/<file>".

    Labels come from ``gtFine/<split>`` or, with `pseudo_label_dir`, from ``<dir>/<city>/<stem>_pseudo_trainIds.png``.
    A train split without a gtFine folder is read unlabelled (the target of adaptation); val needs its labels.
    """
    if split not in SPLITS:
        raise ValueError(f"Cityscapes split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    layout = LAYOUT.format(root=root, split=split)
    image_dir = root / "leftImg8bit" / split
    require_dir(image_dir, "Cityscapes", root, layout)
    images = sorted(f"{p.parent.name}/{p.name}" for p in image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    require_images(images, image_dir, "Cityscapes", root, layout)
    if pseudo_label_dir is not None:
        label_dir, suffix = Path(pseudo_label_dir), PSEUDO_SUFFIX
        require_dir(
            label_dir,
            "Cityscapes pseudo-labels",
            label_dir,
            f"{label_dir}/<city>/<stem>{PSEUDO_SUFFIX} (uint8 train ids, as `udalib pseudo-label` writes)",
        )
    else:
        label_dir, suffix = root / "gtFine" / split, LABEL_SUFFIX
        if not label_dir.is_dir() and split == "train":
            scan = PairScan([Sample(image_dir / n, None, n) for n in images], labelled=False)
            return select_listed(scan, list_file, str(image_dir))
        require_dir(label_dir, "Cityscapes", root, layout)
    pairs = [Sample(image_dir / n, label_dir / (_stem(n) + suffix), n) for n in images]
    found = {f"{p.parent.name}/{p.name}" for p in label_dir.glob(f"*/*{suffix}")}
    expected = {_stem(n) + suffix for n in images}
    scan = PairScan(
        samples=[s for s in pairs if _stem(s.name) + suffix in found],
        missing=[s for s in pairs if _stem(s.name) + suffix not in found],
        labels_without_images=sorted(found - expected),
    )
    return select_listed(scan, list_file, str(image_dir))


class Cityscapes(PairedDataset):
    """Cityscapes ``train`` or ``val``: labelIds → train ids of `protocol` (19 classes, or 16/13 for SYNTHIA).

    list_file: one "<city>/<file>_leftImg8bit.png" per line (the seeds' lists), read in its order.
    pseudo_label_dir: read labels from ``<dir>/<city>/<stem>_pseudo_trainIds.png`` instead (already train ids).
    A train split whose gtFine folder is absent yields all-255 labels (``labelled`` is False).

    Example::

        val = Cityscapes("data/cityscapes", "val", eval_transform(size=(512, 1024), normalization="caffe_bgr"))
        image, label, meta = val[0]  # (3, 512, 1024), (1024, 2048) int64, {"name": "frankfurt/..._leftImg8bit.png"}
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        protocol: Protocol = CITYSCAPES19,
        list_file: str | Path | None = None,
        pseudo_label_dir: str | Path | None = None,
    ):
        self.root, self.split = Path(root), split
        scan = scan_cityscapes(root, split, list_file, pseudo_label_dir)
        label_map = (
            cityscapes_label_map(protocol) if pseudo_label_dir is None else train_id_label_map(protocol.num_classes)
        )
        super().__init__(scan, label_map, protocol, transform)
