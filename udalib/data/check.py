"""``udalib data check``: scan a downloaded dataset once and say in plain words what is wrong with it.

It uses the loaders' own layout scans and id tables, reads every label (one np.bincount per image) and every image
header, and reports: pairs found, images without labels and labels without images, image/label size mismatches,
label ids outside the table (with pixel counts), labels that are ignore (255) in every pixel, 8-bit SYNTHIA labels,
unreadable files and per-class pixel counts. Cityscapes is checked split by split (train and val unless one is named).

The same scan, with ``sample=`` (decode a few files per split, read every other file to its header), is the
pre-flight check a run makes before it trains (:mod:`udalib.data.preflight`).

Example::

    report = check_dataset("data/gta5", "gta5")
    print(format_report(report))   # a table, then the problems; report.ok is False when there are any
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
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
    label_size,
    list_some,
    read_label_ids,
    train_id_label_map,
)
from udalib.data.cityscapes import SPLITS as CITYSCAPES_SPLITS
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

#: The kinds of problem a report names (``CheckReport.kinds``, one per entry of ``problems``).
PROBLEM_KINDS = (
    "not_found",  # the root, a split or a list/id-map file is missing (the layout is named)
    "empty",  # no readable pair (or image) at all
    "no_label",  # images without a label file
    "no_image",  # label files no image points to
    "size",  # image and label of different sizes
    "unknown_ids",  # label ids outside the table (mapped to 255)
    "void",  # every label read is ignore (255) in every pixel: a wrong encoding
    "synthia_8bit",  # SYNTHIA labels that are not the 16-bit originals
    "unreadable",  # files that cannot be decoded (truncated, not an image, colour-coded labels)
)


@dataclass
class CheckReport:
    """What :func:`check_dataset` found. Sizes are (width, height); ``problems`` are sentences for a human.

    pairs: readable image/label pairs (for a split read without labels: readable images).
    images, labels: files opened (every one at least to its header). decoded: pairs (or images) decoded in full;
    equal to ``pairs`` unless the check was sampled (``sampled``), when unknown ids, class pixels and void labels
    describe the decoded files only. kinds: the kind of each problem (:data:`PROBLEM_KINDS`), in the same order.
    """

    dataset: str
    root: str
    split: str | None
    classes: tuple[str, ...]
    pairs: int = 0
    labelled: bool = True
    images: int = 0
    labels: int = 0
    decoded: int = 0
    sampled: bool = False
    images_without_labels: list[str] = field(default_factory=list)
    expected_labels: list[str] = field(default_factory=list)  # where the layout puts those images' labels
    labels_without_images: list[str] = field(default_factory=list)
    size_mismatches: list[tuple[str, tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    unknown_ids: dict[int, int] = field(default_factory=dict)  # raw id → pixels
    unknown_id_files: dict[int, int] = field(default_factory=dict)  # raw id → number of files
    void_labels: list[str] = field(default_factory=list)  # decoded labels that are 255 in every pixel
    class_pixels: list[int] = field(default_factory=list)  # per class, in protocol order
    ignored_pixels: int = 0
    synthia_8bit: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # one message per file, naming it and the reason
    problems: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def class_frequencies(self) -> dict[str, float]:
        """Share of each class among all label pixels (ignored pixels included in the total)."""
        total = sum(self.class_pixels) + self.ignored_pixels
        return {c: (n / total if total else 0.0) for c, n in zip(self.classes, self.class_pixels)}

    def add_problem(self, kind: str, text: str) -> None:
        """Record a problem sentence and its kind (one of :data:`PROBLEM_KINDS`)."""
        if kind not in PROBLEM_KINDS:
            raise ValueError(f"unknown problem kind {kind!r}; expected one of {PROBLEM_KINDS}")
        self.problems.append(text)
        self.kinds.append(kind)


def sample_indices(n: int, k: int) -> list[int]:
    """About `k` of the indices 0..n-1: always the first and the last, the others evenly spaced (deterministic)."""
    if n <= 1:
        return list(range(n))
    m = max(2, min(k, n))
    return sorted({round(i * (n - 1) / (m - 1)) for i in range(m)})


def _open(
    root: Path,
    dataset: str,
    split: str | None,
    protocol: Protocol | None,
    city: str | None,
    id_map,
    pseudo_label_dir: str | Path | None = None,
) -> tuple[PairScan, LabelMap, Callable[[Path], np.ndarray], Protocol, str | None]:
    """(scan, label map, raw-label reader, protocol, split) for one dataset name."""
    if id_map is not None and dataset not in ("crosscity", "folder"):
        raise ValueError("id_map applies to the crosscity and folder datasets only")
    if pseudo_label_dir is not None and dataset != "cityscapes":
        raise ValueError("pseudo_label_dir applies to the cityscapes dataset only")
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
        if pseudo_label_dir is not None:  # already train ids, as `udalib pseudo-label` writes them
            label_map = train_id_label_map(protocol.num_classes)
        else:
            label_map = cityscapes_label_map(protocol)
        return (
            scan_cityscapes(root, split, pseudo_label_dir=pseudo_label_dir),
            label_map,
            read_label_ids,
            protocol,
            split,
        )
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
    pseudo_label_dir: str | Path | None = None,
    sample: int | None = None,
    decode_images: bool = False,
) -> CheckReport:
    """Scan every file of a dataset ("gta5", "cityscapes", "synthia", "crosscity" or "folder") and report.

    split: Cityscapes "train" or "val" (default: both, each checked on its own: a missing split is a problem;
    a train split without gtFine is read unlabelled, as the target of adaptation); Cross-City "test" (default,
    labelled) or "train".
    protocol: class protocol (object or name); default per dataset. city: Cross-City city.
    id_map: Cross-City override of the unverified table, or the folder dataset's id map (default <root>/id_map.json).
    pseudo_label_dir: Cityscapes train with the labels of this folder (train ids, as `udalib pseudo-label` writes).
    sample: decode only this many files per split, always the first and the last and evenly spaced ones between
    (:func:`sample_indices`); every other image and label is read to its header only, which finds missing and
    unreadable headers, colour-coded labels and size mismatches, but not a file cut off after its header. None
    (default): decode every label. decode_images: decode the pixels of each image checked in depth (default:
    verify its PNG chunks and CRCs, which catches truncation without decoding).
    A missing root or wrong layout is reported as a problem, not raised.
    """
    dataset = dataset.lower()
    if dataset not in DISPLAY:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DISPLAY)}")
    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    if dataset == "cityscapes" and split is None and pseudo_label_dir is None:
        kw = dict(protocol=protocol, sample=sample, decode_images=decode_images)
        return merge_reports([check_dataset(root, dataset, split=s, **kw) for s in CITYSCAPES_SPLITS])
    root = Path(root)
    report = CheckReport(DISPLAY[dataset], str(root), split, (), sampled=sample is not None)
    try:
        opened = _open(root, dataset, split, protocol, city, id_map, pseudo_label_dir)
        scan, label_map, read_raw, protocol, report.split = opened
    except FileNotFoundError as err:  # missing root or wrong layout (DatasetNotFoundError), list or id-map file
        report.add_problem("not_found", str(err))
        return report
    decode = None if sample is None else set(sample_indices(len(scan.samples), sample))
    synthia = dataset == "synthia"
    scan_files(report, scan, label_map, read_raw, protocol, synthia=synthia, decode=decode, decode_images=decode_images)
    _summarise(report, label_map)
    if dataset == "crosscity" and id_map is None:
        report.notes.append(
            "the Cross-City label encoding is unverified: road, building, vegetation and sky should "
            "dominate the class table; if not, pass id_map"
        )
    return report


def scan_files(
    report: CheckReport,
    scan: PairScan,
    label_map: LabelMap,
    read_raw: Callable[[Path], np.ndarray],
    protocol: Protocol,
    *,
    synthia: bool,
    decode: Collection[int] | None = None,
    decode_images: bool = False,
) -> None:
    """Read the files of `scan` into `report`'s counts (the one scan behind the data check and the pre-flight).

    decode: indices of ``scan.samples`` read in full (None: all); the others are read to their headers: image and
    label sizes (and the label's channel count), which is enough to find unreadable headers and size mismatches.
    """
    k = protocol.num_classes
    report.classes, report.labelled = protocol.classes, scan.labelled
    report.images_without_labels = [s.name for s in scan.missing]
    report.expected_labels = [str(s.label) for s in scan.missing]
    report.labels_without_images = list(scan.labels_without_images)
    pixels = np.zeros(256, dtype=np.int64)
    unknown, unknown_files = Counter(), Counter()
    for i, sample in enumerate(scan.samples):
        deep = decode is None or i in decode
        report.images += 1
        try:
            size = image_size(sample.image, verify=deep, decode=deep and decode_images)
        except CorruptFileError as err:
            report.unreadable.append(str(err))
            continue
        if sample.label is None:
            report.decoded += deep
            continue
        report.labels += 1
        try:
            if deep:
                raw = read_raw(sample.label)
                shape = raw.shape[::-1]
            else:
                shape = label_size(sample.label, ids=not synthia)
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
        if shape != size:
            report.size_mismatches.append((sample.name, size, shape))
        if not deep:
            continue
        report.decoded += 1
        mapped, found = label_map(raw)
        unknown.update(found)
        unknown_files.update(found.keys())
        counts = np.bincount(mapped.ravel(), minlength=256)
        if counts[IGNORE_INDEX] == mapped.size:
            report.void_labels.append(sample.name)
        pixels += counts
    if not scan.labelled:
        report.pairs = len(scan.samples) - len(report.unreadable)
    report.class_pixels = [int(n) for n in pixels[:k]]
    report.ignored_pixels = int(pixels[IGNORE_INDEX])
    report.unknown_ids = dict(sorted(unknown.items()))
    report.unknown_id_files = dict(sorted(unknown_files.items()))


def _summarise(report: CheckReport, label_map: LabelMap) -> None:
    """Turn the counts into sentences."""
    add, d = report.add_problem, report.dataset
    no_label, no_image = report.images_without_labels, report.labels_without_images
    if report.pairs == 0:
        add("empty", f"no readable {d} {'pairs' if report.labelled else 'images'} found under {report.root}")
    if no_label:
        expected = f" (expected, e.g., {report.expected_labels[0]})" if report.expected_labels else ""
        add("no_label", f"{len(no_label)} {d} images have no label: {list_some(no_label)}{expected}")
    if no_image:
        add("no_image", f"{len(no_image)} {d} labels have no image: {list_some(no_image)}")
    if report.size_mismatches:
        shown = [f"{n} ({iw}x{ih} vs {lw}x{lh})" for n, (iw, ih), (lw, lh) in report.size_mismatches]
        add(
            "size",
            f"{len(shown)} {d} pairs have image and label of different sizes (image vs label): {list_some(shown)}",
        )
    if report.unknown_ids:
        shown = [f"id {i} ({n:,} px in {report.unknown_id_files[i]} files)" for i, n in report.unknown_ids.items()]
        add(
            "unknown_ids",
            f"label ids outside the {label_map.table_name} table (mapped to 255, ignored): {list_some(shown)}",
        )
    if report.labelled and report.decoded and len(report.void_labels) == report.decoded:
        read = f"all {report.decoded} labels read" if not report.sampled else f"all {report.decoded} labels decoded"
        outside = (
            f" (ids outside it: {list_some([str(i) for i in report.unknown_ids], 10)})" if report.unknown_ids else ""
        )
        add(
            "void",
            f"{read} are ignore (255) in every pixel: no pixel carries a class of the {label_map.table_name} "
            f"table{outside}, so training would learn nothing; are they in another encoding? "
            f"({list_some(report.void_labels)})",
        )
    if report.synthia_8bit:
        add(
            "synthia_8bit",
            f"SYNTHIA labels are 8-bit: they must be the 16-bit GT/LABELS PNGs, class id in channel 0 "
            f"({len(report.synthia_8bit)} files: {list_some(report.synthia_8bit)})",
        )
    if report.unreadable:
        add("unreadable", f"{len(report.unreadable)} files cannot be read: {list_some(report.unreadable)}")
    if not report.labelled:
        report.notes.append("this split is read without labels: only the images were checked")
    elif report.pairs and not report.sampled:
        absent = [c for c, n in zip(report.classes, report.class_pixels) if n == 0]
        if absent:
            report.notes.append(f"classes with no pixel: {', '.join(absent)}")


def merge_reports(parts: list[CheckReport]) -> CheckReport:
    """One report of several splits of a dataset: counts added, file names and sentences prefixed with the split."""
    first = parts[0]
    classes = max((p.classes for p in parts), key=len)
    out = CheckReport(first.dataset, first.root, "+".join(str(p.split) for p in parts), classes, sampled=first.sampled)
    out.labelled = any(p.labelled for p in parts if p.classes)
    for p in parts:
        named = lambda names, p=p: [f"{p.split}/{n}" for n in names]
        out.pairs += p.pairs
        out.images += p.images
        out.labels += p.labels
        out.decoded += p.decoded
        out.images_without_labels += named(p.images_without_labels)
        out.expected_labels += p.expected_labels
        out.labels_without_images += named(p.labels_without_images)
        out.size_mismatches += [(f"{p.split}/{n}", a, b) for n, a, b in p.size_mismatches]
        out.void_labels += named(p.void_labels)
        out.synthia_8bit += named(p.synthia_8bit)
        out.unreadable += p.unreadable  # the messages name the full path
        for raw, n in p.unknown_ids.items():
            out.unknown_ids[raw] = out.unknown_ids.get(raw, 0) + n
            out.unknown_id_files[raw] = out.unknown_id_files.get(raw, 0) + p.unknown_id_files[raw]
        if p.class_pixels:
            out.class_pixels = [a + b for a, b in zip(out.class_pixels or [0] * len(classes), p.class_pixels)]
        out.ignored_pixels += p.ignored_pixels
        out.problems += [f"{p.split}: {text}" for text in p.problems]
        out.kinds += p.kinds
        out.notes += [f"{p.split}: {text}" for text in p.notes]
    out.unknown_ids, out.unknown_id_files = (
        dict(sorted(out.unknown_ids.items())),
        dict(sorted(out.unknown_id_files.items())),
    )
    return out


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
        ("all-ignore labels", len(report.void_labels)),
        ("8-bit SYNTHIA labels", len(report.synthia_8bit)),
        ("unreadable files", len(report.unreadable)),
    ]
    if report.sampled:
        rows.append(("decoded in full", f"{report.decoded} (the others: headers only)"))
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
