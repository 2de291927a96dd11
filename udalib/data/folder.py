"""A domain of your own: a folder of images and a folder of single-channel label PNGs, paired by file stem.

The raw label ids are mapped with an explicit table, given as a dict or as a JSON file::

    {"classes": ["road", "building", "sky"],
     "id_map": {"1": 0, "2": 1, "5": 2, "0": 255}}

Every key of ``id_map`` is a known raw id (value 255: known but ignored); any other id becomes 255 and is counted
in ``unknown_id_counts`` (``udalib data check --dataset folder`` reports them all).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from udalib.data.base import LabelMap, PairedDataset, PairScan, Sample, Transform, require_dir, require_images
from udalib.data.labels import IGNORE_INDEX, Protocol

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Names :meth:`FolderPair.from_root` looks for inside a root folder.
ROOT_LAYOUT = "{root}/images/*, {root}/labels/<same stem>.png and {root}/id_map.json"


def folder_root(
    root: str | Path, id_map: dict[int, int] | str | Path | None = None
) -> tuple[Path, Path | None, dict[int, int] | Path]:
    """(image dir, label dir or None when absent, id map) of a root laid out as ROOT_LAYOUT."""
    root = Path(root)
    require_dir(root / "images", "folder dataset", root, ROOT_LAYOUT.format(root=root))
    label_dir = root / "labels" if (root / "labels").is_dir() else None
    return root / "images", label_dir, id_map if id_map is not None else root / "id_map.json"


def load_id_map(
    id_map: dict[int, int] | str | Path, classes: Sequence[str] | None = None
) -> tuple[dict[int, int], tuple[str, ...]]:
    """({raw id: train id}, class names) from a dict plus `classes`, or from a JSON file {"classes", "id_map"}."""
    if isinstance(id_map, (str, Path)):
        path = Path(id_map)
        if not path.is_file():
            raise FileNotFoundError(
                f"id map {path} does not exist: expected a JSON file "
                f'{{"classes": [...], "id_map": {{"raw id": train id}}}}'
            )
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not {"classes", "id_map"} <= data.keys():
            raise ValueError(f'id map {path} must hold {{"classes": [...], "id_map": {{"raw id": train id}}}}')
        if classes is not None and tuple(classes) != tuple(data["classes"]):
            raise ValueError(f"classes {tuple(classes)} differ from those of {path}: {tuple(data['classes'])}")
        table, classes = {int(k): int(v) for k, v in data["id_map"].items()}, data["classes"]
    else:
        if classes is None:
            raise ValueError("FolderPair needs `classes` when id_map is a dict")
        table = {int(k): int(v) for k, v in id_map.items()}
    classes = tuple(classes)
    bad = {k: v for k, v in table.items() if not (0 <= v < len(classes) or v == IGNORE_INDEX)}
    if bad:
        raise ValueError(f"id_map values must be train ids 0..{len(classes) - 1} or 255, got {bad}")
    return table, classes


def folder_label_map(table: dict[int, int]) -> LabelMap:
    """The id map as a LabelMap: its keys are the known ids."""
    return LabelMap.from_table(table, "id_map")


def scan_folder(image_dir: str | Path, label_dir: str | Path | None) -> PairScan:
    """Images sorted by file name, each paired with ``label_dir/<stem>.png`` (unlabelled when label_dir is None)."""
    image_dir = Path(image_dir)
    layout = f"{image_dir}/<name>.<png|jpg|...> and {label_dir}/<name>.png"
    require_dir(image_dir, "image folder", image_dir, layout)
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    require_images(images, image_dir, "image folder", image_dir, layout)
    if label_dir is None:
        return PairScan([Sample(p, None, p.name) for p in images], labelled=False)
    label_dir = Path(label_dir)
    require_dir(label_dir, "label folder", label_dir, layout)
    labels = {p.stem for p in label_dir.glob("*.png")}
    pairs = [Sample(p, label_dir / f"{p.stem}.png", p.name) for p in images]
    return PairScan(
        samples=[s for s in pairs if s.image.stem in labels],
        missing=[s for s in pairs if s.image.stem not in labels],
        labels_without_images=sorted(f"{s}.png" for s in labels - {p.stem for p in images}),
    )


class FolderPair(PairedDataset):
    """Images and labels paired by file stem; raw ids mapped by `id_map` (dict or path to the JSON above).

    Example::

        ds = FolderPair("my/images", "my/labels", {1: 0, 2: 1, 0: 255}, classes=("road", "sky"),
                        transform=eval_transform(size=(512, 1024), normalization="caffe_bgr"))
        image, label, meta = ds[0]   # meta["name"] == "frame_0001.jpg", label values in {0, 1, 255}

    `label_dir=None` reads the images unlabelled (all-255 labels), e.g. as an adaptation target.
    Palette colours (``protocol.palette``) exist only for Cityscapes class names.
    """

    def __init__(
        self,
        image_dir: str | Path,
        label_dir: str | Path | None,
        id_map: dict[int, int] | str | Path,
        transform: Transform | None = None,
        classes: Sequence[str] | None = None,
    ):
        table, classes = load_id_map(id_map, classes)
        self.id_map = table
        super().__init__(
            scan_folder(image_dir, label_dir), folder_label_map(table), Protocol("folder", classes), transform
        )

    @classmethod
    def from_root(
        cls,
        root: str | Path,
        transform: Transform | None = None,
        id_map: dict[int, int] | str | Path | None = None,
        classes: Sequence[str] | None = None,
    ) -> FolderPair:
        """Read ``<root>/images``, ``<root>/labels`` (optional) and ``<root>/id_map.json`` (unless `id_map` given)."""
        image_dir, label_dir, id_map = folder_root(root, id_map)
        return cls(image_dir, label_dir, id_map, transform, classes)
