"""NTHU Cross-City (Chen, Chen, Chen, Tsai, Wang, Sun, "No More Discrimination: Cross City Adaptation of Road Scene
Segmenters", ICCV 2017).

Four cities (Rio, Rome, Taipei, Tokyo), each with about 3,200 unlabelled train images and 100 labelled test images,
13 classes shared with Cityscapes. Layout: ``<City>/Images/Train/*``, ``<City>/Images/Test/*``,
``<City>/Labels/Test/*``.

**The label encoding is unverified** (no released loader states it). The mapping is therefore the
table below, not code. To check it against your copy, run::

    udalib data check data/NTHU --dataset crosscity --city Rome

and read the per-class pixel frequencies: road, building, vegetation and sky should dominate, and "unknown ids"
should be empty. If they are not, pass ``id_map={raw id: train id}`` (to :class:`CrossCity` and to the check)
and report what you found.
"""

from __future__ import annotations

from pathlib import Path

from udalib.data.base import LabelMap, PairedDataset, PairScan, Sample, Transform, require_dir, require_images
from udalib.data.folder import load_id_map
from udalib.data.labels import CROSSCITY13, IGNORE_INDEX, Protocol

# UNVERIFIED: assumes the Cityscapes labelIds encoding restricted to the 13 shared classes. Check it with
#   udalib data check <root> --dataset crosscity --city Rome
# road, building, vegetation and sky should dominate the class table and "unknown ids" should be 0; otherwise pass
# id_map= and fix this table.
#: raw label id → class name; None marks a known id that is ignored (void, or a class outside the 13).
CROSSCITY_ID_TABLE: dict[int, str | None] = {
    **{i: None for i in range(34)},
    7: "road",
    8: "sidewalk",
    11: "building",
    19: "traffic light",
    20: "traffic sign",
    21: "vegetation",
    23: "sky",
    24: "person",
    25: "rider",
    26: "car",
    28: "bus",
    32: "motorcycle",
    33: "bicycle",
    255: None,
}
#: UNVERIFIED: a test label is "<image stem><suffix>.png" for the first suffix that exists.
CROSSCITY_LABEL_SUFFIXES: tuple[str, ...] = ("", "_eval")
CITIES = ("Rio", "Rome", "Taipei", "Tokyo")
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
LAYOUT = "{root}/{city}/Images/Train/*, {root}/{city}/Images/Test/* and {root}/{city}/Labels/Test/*"


def crosscity_label_map(
    protocol: Protocol = CROSSCITY13, id_map: dict[int, int] | str | Path | None = None
) -> LabelMap:
    """Raw Cross-City ids → `protocol`'s train ids, from CROSSCITY_ID_TABLE or an explicit `id_map`.

    id_map: {raw id: train id}, or a JSON file as for :class:`~udalib.data.folder.FolderPair` whose classes must be
    the protocol's.
    """
    if id_map is not None:
        table, _ = load_id_map(id_map, protocol.classes)
        return LabelMap.from_table(table, "Cross-City id_map")
    index = {c: i for i, c in enumerate(protocol.classes)}
    table = {raw: index.get(name, IGNORE_INDEX) if name else IGNORE_INDEX for raw, name in CROSSCITY_ID_TABLE.items()}
    return LabelMap.from_table(table, "Cross-City (unverified)")


def scan_crosscity(root: str | Path, city: str, split: str) -> PairScan:
    """Images of ``<City>/Images/<Split>`` sorted by file name; test images paired with ``Labels/Test``."""
    if city not in CITIES:
        raise ValueError(f"Cross-City city must be one of {CITIES}, got {city!r}")
    if split not in SPLITS:
        raise ValueError(f"Cross-City split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    layout = LAYOUT.format(root=root, city=city)
    image_dir = root / city / "Images" / split.capitalize()
    require_dir(image_dir, "NTHU Cross-City", root, layout)
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    require_images(images, image_dir, "NTHU Cross-City", root, layout)
    if split == "train":
        return PairScan([Sample(p, None, p.name) for p in images], labelled=False)
    label_dir = root / city / "Labels" / "Test"
    require_dir(label_dir, "NTHU Cross-City", root, layout)
    labels = {p.name for p in label_dir.glob("*.png")}
    samples, missing, used = [], [], set()
    for p in images:
        found = [p.stem + s + ".png" for s in CROSSCITY_LABEL_SUFFIXES if p.stem + s + ".png" in labels]
        if found:
            used.add(found[0])
            samples.append(Sample(p, label_dir / found[0], p.name))
        else:
            missing.append(Sample(p, label_dir / (p.stem + ".png"), p.name))
    return PairScan(samples, missing, sorted(labels - used))


class CrossCity(PairedDataset):
    """One NTHU Cross-City city: ``train`` is unlabelled (all-255 labels), ``test`` has 13-class labels.

    id_map: overrides the unverified CROSSCITY_ID_TABLE with {raw id: train id} (or a JSON file, see
    :func:`crosscity_label_map`); every key is a known id.

    Example::

        rome = CrossCity("data/NTHU", "Rome", "test", eval_transform(size=(512, 1024), normalization="caffe_bgr"))
    """

    def __init__(
        self,
        root: str | Path,
        city: str,
        split: str = "train",
        transform: Transform | None = None,
        protocol: Protocol = CROSSCITY13,
        id_map: dict[int, int] | str | Path | None = None,
    ):
        self.root, self.city, self.split = Path(root), city, split
        super().__init__(scan_crosscity(root, city, split), crosscity_label_map(protocol, id_map), protocol, transform)
