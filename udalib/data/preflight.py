"""Pre-flight: every bad input of a run's data found before training starts, and reported in one error.

:func:`preflight` checks each split a run reads (the labelled set, target train, target val and, for
self-training, the pseudo-label folder) with the data check's own scan (:func:`udalib.data.check.check_dataset`):

* fast (default): every image and label is opened to its header (the file exists and is an image, its size, a
  label's channel count), so missing splits, missing labels, unreadable headers, colour-coded labels and
  image/label size mismatches are found in every file; and `sample` files of each split (8; always the first and
  the last, the others evenly spaced) are decoded in full, which finds label encodings with no known id (every
  decoded label ignore in every pixel), 8-bit SYNTHIA labels and cut-off files among them. A PNG cut off after its
  header is only found if it is one of the decoded files: ``full=True`` decodes every file.
* ``full=True``: every image and label decoded (what ``udalib data check`` does, plus the images' pixels).

Problems that make a run wrong or make it crash later are errors; :func:`preflight` raises one :class:`DataError`
listing all of them. Label files without an image and label ids outside the table in a part of the labels (mapped
to 255, as the loaders do) are warnings, as are the image/label size mismatches of the real GTA5 (the release has a
few; the loader nearest-resizes the label). The report says what was read and how long it took.

Example::

    report = preflight(cfg)            # raises DataError naming every broken file, else returns the counts
    print(report)                      # pre-flight: 2,700 images, 2,700 labels (headers), 24 decoded, 0.4 s: OK
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from udalib.config import STAGE_PREFIX, RunConfig
from udalib.data.base import DataError
from udalib.data.check import CheckReport, check_dataset
from udalib.data.domains import ensure_synthcity
from udalib.data.labels import get_protocol

#: Files per split decoded in full by the fast check.
DEFAULT_SAMPLE = 8
#: Problem kinds (``udalib.data.check.PROBLEM_KINDS``) that do not stop a run: the loaders handle them.
WARNING_KINDS = ("no_image", "unknown_ids")

__all__ = ["DEFAULT_SAMPLE", "DataError", "PreflightReport", "SplitCheck", "check_run_data", "preflight"]


@dataclass
class SplitCheck:
    """One split a run reads: its role in the run ("source", "target train", ...), the check's report, and the
    report's problems sorted into errors and warnings (each prefixed with the role, the dataset and its folder)."""

    role: str
    report: CheckReport
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        r = self.report
        return f"{self.role} ({r.dataset} at {r.root}{f', split {r.split}' if r.split else ''})"


@dataclass
class PreflightReport:
    """What :func:`check_run_data` read and found. errors and warnings: every sentence, splits' ones included."""

    full: bool
    sample: int | None
    splits: list[SplitCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def images(self) -> int:
        return sum(s.report.images for s in self.splits)

    @property
    def labels(self) -> int:
        return sum(s.report.labels for s in self.splits)

    @property
    def decoded(self) -> int:
        return sum(s.report.decoded for s in self.splits)

    def __str__(self) -> str:
        how = "every file decoded" if self.full else f"headers, {self.sample} files per split decoded"
        lines = [
            f"pre-flight ({how}): {self.images:,} images, {self.labels:,} labels, {self.decoded:,} decoded, "
            f"{self.seconds:.1f} s: {'OK' if self.ok else f'{len(self.errors)} problem(s)'}"
        ]
        lines += [f"  {s.where}: {s.report.pairs:,} {'pairs' if s.report.labelled else 'images'}" for s in self.splits]
        for title, items in (("problems", self.errors), ("warnings", self.warnings), ("notes", self.notes)):
            if items:
                lines += [f"{title}:"] + [f"  - {text}" for text in items]
        return "\n".join(lines)


def _plan(cfg: RunConfig) -> tuple[list[tuple[str, dict]], list[str], list[str]]:
    """([(role, check_dataset keywords)], errors, notes): the splits `build_domains` reads for `cfg`."""
    d = cfg.data
    protocol = get_protocol(d.protocol)
    errors, notes, plan = [], [], []
    roots = {"target_root": d.target_root, **({"source_root": d.source_root} if d.labelled == "source" else {})}
    missing = [name for name, root in roots.items() if root is None]
    if missing:
        return [], [f"no {' and no '.join(missing)} given: the run does not say where its data is"], notes
    if "synthcity" in (d.source, d.target):
        try:
            ensure_synthcity(cfg)
        except FileNotFoundError as err:
            return [], [str(err)], notes
    target = Path(d.target_root) / "target" if d.target == "synthcity" else Path(d.target_root)
    common = {"protocol": protocol}
    if d.labelled == "source":
        if d.source in ("synthcity", "gta5"):
            root = Path(d.source_root) / "source" if d.source == "synthcity" else Path(d.source_root)
            plan.append(("source", {"root": root, "dataset": "gta5", **common}))
        elif d.source == "synthia":
            plan.append(("source", {"root": Path(d.source_root), "dataset": "synthia", **common}))
        else:
            errors.append(f"unknown source dataset {d.source!r}; expected synthcity, gta5 or synthia")
    elif d.pseudo_label_dir is None:
        plan.append(("target train (labelled)", {"root": target, "dataset": "cityscapes", "split": "train", **common}))
    elif d.pseudo_label_dir.startswith(STAGE_PREFIX):
        notes.append(f"pseudo-labels {d.pseudo_label_dir!r} are made by a cached stage: checked once they exist")
    else:
        kw = {"root": target, "dataset": "cityscapes", "split": "train", "pseudo_label_dir": d.pseudo_label_dir}
        plan.append((f"target train pseudo-labels in {d.pseudo_label_dir}", {**kw, **common}))
    if not (d.labelled == "target" and d.pseudo_label_dir is None):  # else checked above with its labels
        plan.append(("target train", {"root": target, "dataset": "cityscapes", "split": "train", **common}))
    plan.append(("target val", {"root": target, "dataset": "cityscapes", "split": "val", **common}))
    return plan, errors, notes


def _sort(check: SplitCheck, *, tolerate_size: bool) -> None:
    """Sort the report's problems into errors and warnings, each prefixed with where it was found."""
    r = check.report
    for kind, text in zip(r.kinds, r.problems):
        warn = kind in WARNING_KINDS or (kind == "size" and tolerate_size)
        if warn and kind == "size":
            text += " (the GTA5 release has a few such pairs; the loader nearest-resizes their labels)"
        if kind == "unknown_ids" and r.sampled and r.decoded < r.pairs:
            text += f" (in the {r.decoded} decoded files)"
        (check.warnings if warn else check.errors).append(f"{check.where}: {text}")
    if check.role == "target train (labelled)" and not r.labelled and "not_found" not in r.kinds:
        check.errors.append(
            f"{check.where}: no labels: the run trains on target train labels (the oracle), but {r.root}/gtFine/train "
            f"does not exist; expected {r.root}/gtFine/train/<city>/*_gtFine_labelIds.png"
        )


def check_run_data(cfg: RunConfig, *, full: bool = False, sample: int = DEFAULT_SAMPLE) -> PreflightReport:
    """Check every split `cfg`'s run reads (see the module docstring) and return what was found, without raising.

    Generates the run's SynthCity set first if the shared cache lacks it, as building the datasets would.
    """
    report = PreflightReport(full=full, sample=None if full else sample)
    plan, report.errors, report.notes = _plan(cfg)
    t0 = time.perf_counter()  # after the plan, which may generate SynthCity first: the time is the check's own
    for role, kw in plan:
        check = SplitCheck(role, check_dataset(**kw, sample=None if full else sample, decode_images=True))
        _sort(check, tolerate_size=role == "source" and cfg.data.source == "gta5")
        report.splits.append(check)
        report.errors += check.errors
        report.warnings += check.warnings
    report.seconds = time.perf_counter() - t0
    return report


def preflight(cfg: RunConfig, *, full: bool = False, sample: int = DEFAULT_SAMPLE) -> PreflightReport:
    """Check the run's data before training (:func:`check_run_data`); raise one :class:`DataError` (a ValueError)
    listing every problem found, or return the report (counts read, warnings, time taken).

    full: decode every image and label (the fast default reads every header and decodes `sample` files per split:
    the first, the last and evenly spaced ones; a file cut off after its header elsewhere is found only by
    ``full=True`` or ``udalib data check``).
    """
    report = check_run_data(cfg, full=full, sample=sample)
    if report.errors:
        how = "every file decoded" if full else f"every header read, {sample} files per split decoded"
        warnings = ["warnings (these alone would not stop the run):"] if report.warnings else []
        raise DataError(
            "\n".join(
                [f"the run's data has {len(report.errors)} problem(s) ({how}); nothing was trained:"]
                + [f"  - {text}" for text in report.errors]
                + warnings
                + [f"  - {text}" for text in report.warnings]
            )
        )
    return report
