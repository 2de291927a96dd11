"""``udalib data check``: scan a downloaded dataset once and say in plain words what is wrong with it.

It uses the loaders' own layout scans and id tables, reads every label (one np.bincount per image) and every image
header, and reports: pairs found, images without labels and labels without images, image/label size mismatches,
label ids outside the table (with pixel counts), 8-bit SYNTHIA labels, unreadable files and per-class pixel counts.

Example::

    report = check_dataset("data/gta5", "gta5")
    print(format_report(report))   # a table, then the problems; report.ok is False when there are any
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from udalib.data.base import (
    CorruptFileError,
    LabelFormatError,
    LabelMap,
    PairScan,
    cityscapes_label_map,
    image_size,
    list_some,
    read_label_ids,
)
from udalib.data.cityscapes import scan_cityscapes
from udalib.data.crosscity import crosscity_label_map, scan_crosscity
from udalib.data.folder import folder_label_map, folder_root, load_id_map, scan_folder
from udalib.data.gta5 import scan_gta5
from udalib.data.labels import CITYSCAPES19, CROSSCITY13, IGNORE_INDEX, SYNTHIA16, Protocol, get_protocol
from udalib.data.synthia import read_synthia_label, scan_synthia, synthia_label_map

DISPLAY = {
    "gta5": "GTA5",
    "cityscapes": "Cityscapes",
    "synthia": "SYNTHIA",
    "crosscity": "Cross-City",
    "folder": "folder",
}
DEFAULT_PROTOCOL = {"gta5": CITYSCAPES19, "cityscapes": CITYSCAPES19, "synthia": SYNTHIA16, "crosscity": CROSSCITY13}


@dataclass
class CheckReport:
    """What :func:`check_dataset` found. Sizes are (width, height); ``problems`` are sentences for a human.

    pairs: readable image/label pairs (for a split read without labels: readable images).
    """

    dataset: str
    root: str
    split: str | None
    classes: tuple[str, ...]
    pairs: int = 0
    labelled: bool = True
    images_without_labels: list[str] = field(default_factory=list)
    labels_without_images: list[str] = field(default_factory=list)
    size_mismatches: list[tuple[str, tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    unknown_ids: dict[int, int] = field(default_factory=dict)  # raw id → pixels
    unknown_id_files: dict[int, int] = field(default_factory=dict)  # raw id → number of files
    class_pixels: list[int] = field(default_factory=list)  # per class, in protocol order
    ignored_pixels: int = 0
    synthia_8bit: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # one message per file, naming it and the reason
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def class_frequencies(self) -> dict[str, float]:
        """Share of each class among all label pixels (ignored pixels included in the total)."""
        total = sum(self.class_pixels) + self.ignored_pixels
        return {c: (n / total if total else 0.0) for c, n in zip(self.classes, self.class_pixels)}


def _open(
    root: Path, dataset: str, split: str | None, protocol: Protocol | None, city: str | None, id_map
) -> tuple[PairScan, LabelMap, Callable[[Path], np.ndarray], Protocol, str | None]:
    """(scan, label map, raw-label reader, protocol, split) for one dataset name."""
    if id_map is not None and dataset not in ("crosscity", "folder"):
        raise ValueError("id_map applies to the crosscity and folder datasets only")
    if dataset == "folder":
        image_dir, label_dir, id_map = folder_root(root, id_map)
        table, classes = load_id_map(id_map, protocol.classes if protocol else None)
        return (
            scan_folder(image_dir, label_dir),
            folder_label_map(table),
            read_label_ids,
            Protocol("folder", classes),
            None,
        )
    protocol = protocol or DEFAULT_PROTOCOL[dataset]
    if dataset == "gta5":
        return scan_gta5(root), cityscapes_label_map(protocol), read_label_ids, protocol, None
    if dataset == "synthia":
        return scan_synthia(root), synthia_label_map(protocol), read_synthia_label, protocol, None
    if dataset == "cityscapes":
        split = split or "train"
        return scan_cityscapes(root, split), cityscapes_label_map(protocol), read_label_ids, protocol, split
    if city is None:
        raise ValueError("the crosscity check needs city= (Rio, Rome, Taipei or Tokyo)")
    split = split or "test"
    return scan_crosscity(root, city, split), crosscity_label_map(protocol, id_map), read_label_ids, protocol, split


def check_dataset(
    root: str | Path,
    dataset: str,
    *,
    split: str | None = None,
    protocol: Protocol | str | None = None,
    city: str | None = None,
    id_map: dict[int, int] | str | Path | None = None,
) -> CheckReport:
    """Scan every file of a dataset ("gta5", "cityscapes", "synthia", "crosscity" or "folder") and report.

    split: Cityscapes "train" (default) or "val"; Cross-City "test" (default, labelled) or "train".
    protocol: class protocol (object or name); default per dataset. city: Cross-City city.
    id_map: Cross-City override of the unverified table, or the folder dataset's id map (default <root>/id_map.json).
    A missing root or wrong layout is reported as a problem, not raised.
    """
    dataset = dataset.lower()
    if dataset not in DISPLAY:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DISPLAY)}")
    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    root = Path(root)
    report = CheckReport(DISPLAY[dataset], str(root), split, ())
    try:
        scan, label_map, read_raw, protocol, report.split = _open(root, dataset, split, protocol, city, id_map)
    except FileNotFoundError as err:  # missing root or wrong layout (DatasetNotFoundError), list or id-map file
        report.problems.append(str(err))
        return report
    _scan_files(report, scan, label_map, read_raw, protocol, synthia=dataset == "synthia")
    _summarise(report, label_map)
    if dataset == "crosscity" and id_map is None:
        report.notes.append(
            "the Cross-City label encoding is unverified: road, building, vegetation and sky should "
            "dominate the class table; if not, pass id_map"
        )
    return report


def _scan_files(
    report: CheckReport,
    scan: PairScan,
    label_map: LabelMap,
    read_raw: Callable[[Path], np.ndarray],
    protocol: Protocol,
    synthia: bool,
) -> None:
    k = protocol.num_classes
    report.classes, report.labelled = protocol.classes, scan.labelled
    report.images_without_labels = [s.name for s in scan.missing]
    report.labels_without_images = list(scan.labels_without_images)
    pixels = np.zeros(256, dtype=np.int64)
    unknown, unknown_files = Counter(), Counter()
    for sample in scan.samples:
        try:
            size = image_size(sample.image, verify=True)
        except CorruptFileError as err:
            report.unreadable.append(str(err))
            continue
        if sample.label is None:
            continue
        try:
            raw = read_raw(sample.label)
        except LabelFormatError as err:  # SYNTHIA: an 8-bit file; otherwise a colour-coded label
            if synthia:
                report.synthia_8bit.append(sample.name)
            else:
                report.unreadable.append(str(err))
            continue
        except CorruptFileError as err:
            report.unreadable.append(str(err))
            continue
        report.pairs += 1
        if raw.shape[::-1] != size:
            report.size_mismatches.append((sample.name, size, raw.shape[::-1]))
        mapped, found = label_map(raw)
        unknown.update(found)
        unknown_files.update(found.keys())
        pixels += np.bincount(mapped.ravel(), minlength=256)
    if not scan.labelled:
        report.pairs = len(scan.samples) - len(report.unreadable)
    report.class_pixels = [int(n) for n in pixels[:k]]
    report.ignored_pixels = int(pixels[IGNORE_INDEX])
    report.unknown_ids = dict(sorted(unknown.items()))
    report.unknown_id_files = dict(sorted(unknown_files.items()))


def _summarise(report: CheckReport, label_map: LabelMap) -> None:
    """Turn the counts into sentences."""
    p, d = report.problems, report.dataset
    no_label, no_image = report.images_without_labels, report.labels_without_images
    if report.pairs == 0:
        p.append(f"no readable {d} {'pairs' if report.labelled else 'images'} found under {report.root}")
    if no_label:
        p.append(f"{len(no_label)} {d} images have no label: {list_some(no_label)}")
    if no_image:
        p.append(f"{len(no_image)} {d} labels have no image: {list_some(no_image)}")
    if report.size_mismatches:
        shown = [f"{n} ({iw}x{ih} vs {lw}x{lh})" for n, (iw, ih), (lw, lh) in report.size_mismatches]
        p.append(f"{len(shown)} {d} pairs have image and label of different sizes (image vs label): {list_some(shown)}")
    if report.unknown_ids:
        shown = [f"id {i} ({n:,} px in {report.unknown_id_files[i]} files)" for i, n in report.unknown_ids.items()]
        p.append(f"label ids outside the {label_map.table_name} table (mapped to 255, ignored): {list_some(shown)}")
    if report.synthia_8bit:
        p.append(
            f"SYNTHIA labels are 8-bit: they must be the 16-bit GT/LABELS PNGs, class id in channel 0 "
            f"({len(report.synthia_8bit)} files: {list_some(report.synthia_8bit)})"
        )
    if report.unreadable:
        p.append(f"{len(report.unreadable)} files cannot be read: {list_some(report.unreadable)}")
    if not report.labelled:
        report.notes.append("this split is read without labels: only the images were checked")
    elif report.pairs:
        absent = [c for c, n in zip(report.classes, report.class_pixels) if n == 0]
        if absent:
            report.notes.append(f"classes with no pixel: {', '.join(absent)}")


def format_report(report: CheckReport) -> str:
    """A plain-text table for a human: counts, per-class pixels, then problems and notes."""
    split = f", split {report.split}" if report.split else ""
    unknown_px = sum(report.unknown_ids.values())
    rows = [
        ("pairs found" if report.labelled else "images found", report.pairs),
        ("images without labels", len(report.images_without_labels)),
        ("labels without images", len(report.labels_without_images)),
        ("size mismatches", len(report.size_mismatches)),
        ("unknown ids", f"{len(report.unknown_ids)} ({unknown_px:,} px)"),
        ("8-bit SYNTHIA labels", len(report.synthia_8bit)),
        ("unreadable files", len(report.unreadable)),
    ]
    lines = [f"{report.dataset} at {report.root}{split}: {'OK' if report.ok else 'PROBLEMS FOUND'}", ""]
    lines += [f"  {name:<24}{value}" for name, value in rows]
    if report.class_pixels and report.labelled:
        width = max(len(c) for c in report.classes + ("ignore (255)",))
        freq = report.class_frequencies
        total = sum(report.class_pixels) + report.ignored_pixels
        lines += ["", f"  {'id':>3}  {'class':<{width}}  {'pixels':>15}  {'share':>7}"]
        lines += [
            f"  {i:>3}  {c:<{width}}  {n:>15,}  {100 * freq[c]:>6.2f}%"
            for i, (c, n) in enumerate(zip(report.classes, report.class_pixels))
        ]
        share = 100 * report.ignored_pixels / total if total else 0.0
        lines.append(f"  {255:>3}  {'ignore (255)':<{width}}  {report.ignored_pixels:>15,}  {share:>6.2f}%")
    if report.problems:
        lines += ["", f"Problems ({len(report.problems)}):"] + [f"  - {p}" for p in report.problems]
    if report.notes:
        lines += ["", "Notes:"] + [f"  - {n}" for n in report.notes]
    return "\n".join(lines)
