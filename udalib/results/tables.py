"""Tables of the records beside the published numbers: the comparison chapter's table, the chapters' result and
gain tables, the anatomy of SynthCity's shift and the knob matrix, per-class means for heatmaps.

Every number comes from the records (:func:`udalib.results.store.load`); the published ones from the catalogue.
Example::

    from udalib import results
    print(results.results_table("quick", results.catalogue_names(chapter="advent")))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..config import SHIFT_KNOBS
from .catalogue import CATALOGUE, MATRIX_KNOBS, MATRIX_METHODS, published
from .stats import gap_recovered, mean_std, paired_gain, summary
from .store import load

#: The smallest source-only → oracle gap (mIoU) whose share recovered by AdaBN the anatomy reports.
MIN_GAP = 2.0


def shift_anatomy(preset: str = "quick", root: str | Path | None = None) -> list[dict]:
    """The anatomy of SynthCity's gap: one row for the default pair (records ``source_only``,
    ``source_only_adabn``, ``oracle``) and one per knob alone (records ``shift_<knob>``), each with "pair", "seeds",
    the mean "source_only", "adabn" and "oracle" mIoU over seeds, the "gap" (oracle − source-only) and the share
    of it AdaBN "recovered" (None where the gap is under :data:`MIN_GAP` mIoU: a share of almost nothing says
    nothing). Pairs without records are left out.
    """
    data = load(preset, root)
    mean = lambda values: mean_std(values)[0]  # noqa: E731
    pairs = []
    default = [data.get(n, []) for n in ("source_only", "source_only_adabn", "oracle")]
    if all(default):
        pairs.append(("default pair (all knobs)", len(default[0]), *([r["miou"] for r in recs] for recs in default)))
    for knob in SHIFT_KNOBS:
        recs = data.get(f"shift_{knob}", [])
        if recs:
            ends = ([r["miou"] for r in recs], [r["adabn"]["miou"] for r in recs], [r["oracle"]["miou"] for r in recs])
            pairs.append((f"{knob} alone", len(recs), *ends))
    rows = []
    for pair, seeds, source, adabn, oracle in pairs:
        so, ad, orc = mean(source), mean(adabn), mean(oracle)
        gap = orc - so
        recovered = (ad - so) / gap if gap >= MIN_GAP else None
        rows.append(dict(pair=pair, seeds=seeds, source_only=so, adabn=ad, oracle=orc, gap=gap, recovered=recovered))
    return rows


def anatomy_table(rows: list[dict]) -> str:
    """A text table of :func:`shift_anatomy`."""

    def share(r: dict) -> str:
        return "no gap" if r["recovered"] is None else f"{100 * r['recovered']:.0f}%"

    lines = [
        f"{'pair':<26} {'seeds':>5} {'source-only':>11} {'AdaBN':>6} {'oracle':>6} {'gap':>6} {'AdaBN recovers':>15}"
    ]
    lines += [
        f"{r['pair']:<26} {r['seeds']:5d} {r['source_only']:11.1f} {r['adabn']:6.1f} {r['oracle']:6.1f} "
        f"{r['gap']:6.1f} {share(r):>15}"
        for r in rows
    ]
    return "\n".join(lines)


def format_summary(rows: list[dict]) -> str:
    lines = [f"{'method':<24} {'mIoU':>6} {'± std':>6} {'seeds':>5} {'iters':>6}"]
    lines += [
        f"{r['method']:<24} {r['miou_mean']:6.1f} {r['miou_std']:6.1f} {r['seeds']:5d} {r['iters']:6d}" for r in rows
    ]
    return "\n".join(lines)


def results_rows(preset: str, methods: Sequence[str], root=None) -> list[dict]:
    """One row per method: our mean mIoU ± std over seeds from ``results/<preset>/`` (None if not measured yet),
    the gain over source-only paired by seed, the fraction of the source-only → oracle gap recovered (ours and
    published), and the published GTA5→Cityscapes number (:func:`udalib.results.catalogue.published`)."""
    ours = {r["method"]: r for r in summary(preset, list(methods) + ["source_only", "oracle"], root)}
    ends = [ours.get(m, {}).get("miou_mean") for m in ("source_only", "oracle")]
    paper_ends = [published(m)[0] for m in ("source_only", "oracle")]
    rows = []
    for m in methods:
        paper, note = published(m)
        r = ours.get(m)
        gain = None if r is None or m == "source_only" else paired_gain(preset, m, root=root)
        rows.append(
            {
                "method": m,
                "ours": None if r is None else r["miou_mean"],
                "std": None if r is None else r["miou_std"],
                "seeds": 0 if r is None else r["seeds"],
                "iters": None if r is None else r["iters"],
                "gain": gain,
                "gap": None if r is None or None in ends else gap_recovered(r["miou_mean"], *ends),
                "paper_gap": None if paper is None else gap_recovered(paper, *paper_ends),
                "paper": paper,
                "paper_note": note,
                "paper_caveat": CATALOGUE[m].published_caveat if m in CATALOGUE else "",
                "vs_adabn": None if r is None else paired_gain(preset, m, "source_only_adabn", root),
                "wall_s": None if r is None else r["wall_s"],
            }
        )
    return rows


def _percent(share: float | None) -> str:
    """A share of the gap as a whole percentage, empty where there is none."""
    return "" if share is None else f"{100 * share:.0f}%"


def _distinguishable(g: dict) -> bool:
    """Whether the 95 % interval of a paired difference excludes 0 (either sign)."""
    return g["verdict"] in ("above 0", "below 0")


def _signed(g: dict | None) -> str:
    """A paired difference for a Markdown table: mean [95 % interval], bold where the interval excludes 0."""
    if g is None:
        return ""
    i = g["interval"]
    text = f"{i.mean:+.1f}" + (f" [{i.low:+.1f}, {i.high:+.1f}]" if i.seeds > 1 else "")
    return f"**{text}**" if _distinguishable(g) else text


def _published_cell(row: dict) -> str:
    """The published number, with what its method does that ours does not, or a dash where there is none."""
    if row["paper"] is None:
        return "—"
    return f"{row['paper']:.1f}" + (f" ({row['paper_caveat']})" if row["paper_caveat"] else "")


def comparison_markdown(preset: str, methods: Sequence[str], root=None) -> str:
    """The comparison chapter's table as Markdown, one row per method of :func:`results_rows`: our mIoU (mean ±
    std over seeds), the gains paired by seed over source-only and over AdaBN alone with their 95 % interval over
    seeds (bold where it excludes 0), the share of the source-only → oracle gap recovered, the published number
    and its share of the published gap, and the mean wall time of one run (its own training or evaluation only:
    cached stages it starts from are not counted)."""
    rows = results_rows(preset, methods, root)
    lines = [
        f"| method | ours ({preset}) | seeds | over source-only | over AdaBN alone | gap closed | published "
        "| gap closed | minutes per run |",
        "|:--|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        if r["ours"] is None:
            ours = "not measured"
        else:
            ours = f"{r['ours']:.1f}" + ("" if r["std"] is None or math.isnan(r["std"]) else f" ± {r['std']:.1f}")
        vs_adabn = "" if r["method"] == "source_only_adabn" else _signed(r["vs_adabn"])
        cells = [
            f"`{r['method']}`",
            ours,
            str(r["seeds"]),
            _signed(r["gain"]),
            vs_adabn,
            _percent(r["gap"]),
            _published_cell(r),
            _percent(r["paper_gap"]),
            "" if r["wall_s"] is None else f"{r['wall_s'] / 60:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_class_means(preset: str, methods: Sequence[str], root=None) -> tuple[list[str], list[str], list[list[float]]]:
    """(measured methods in the given order, classes, mean IoU per method and class over seeds) for a heatmap."""
    data = load(preset, root)
    names = [m for m in methods if data.get(m)]
    if not names:
        return [], [], []
    classes = list(data[names[0]][0]["per_class_iou"])
    table = [[sum(r["per_class_iou"][c] for r in data[m]) / len(data[m]) for c in classes] for m in names]
    return names, classes, table


def knob_matrix(preset: str = "quick", root=None) -> dict:
    """Which method closes which kind of shift: on the pair of each knob alone (``shift_<knob>``, one seed), the
    gap (oracle − source-only), what AdaBN alone gains, and what each method of
    :data:`udalib.results.catalogue.MATRIX_METHODS` gains (records ``<method>_on_<knob>``), all over the same
    source-only model scored on that pair, paired by seed.

    Returns {"knobs": [...], "gap": {knob: mIoU}, "gains": {row: {knob: mIoU or None}}} with the rows "AdaBN alone"
    and each method; a knob without a ``shift_<knob>`` record is left out, a method not run on a knob is None.
    """
    data = load(preset, root)
    shifts = {k: {r["seed"]: r for r in data.get(f"shift_{k}", [])} for k in MATRIX_KNOBS}
    knobs = [k for k in MATRIX_KNOBS if shifts[k]]
    mean = lambda values: mean_std(values)[0] if values else None  # noqa: E731
    gap = {k: mean([r["oracle"]["miou"] - r["miou"] for r in shifts[k].values()]) for k in knobs}
    gains: dict[str, dict[str, float | None]] = {
        "AdaBN alone": {k: mean([r["adabn"]["miou"] - r["miou"] for r in shifts[k].values()]) for k in knobs}
    }
    for m in MATRIX_METHODS:
        gains[m] = {}
        for k in knobs:
            runs = data.get(f"{m}_on_{k}", [])
            gains[m][k] = mean([r["miou"] - shifts[k][r["seed"]]["miou"] for r in runs if r["seed"] in shifts[k]])
    return {"knobs": knobs, "gap": gap, "gains": gains}


def knob_matrix_markdown(matrix: dict) -> str:
    """:func:`knob_matrix` as a Markdown table: gain over source-only per knob, with the share of that knob's gap."""
    knobs = matrix["knobs"]
    lines = ["| | " + " | ".join(knobs) + " |", "|:--|" + "--:|" * len(knobs)]
    lines.append("| gap (oracle − source-only) | " + " | ".join(f"{matrix['gap'][k]:.1f}" for k in knobs) + " |")
    for row, gains in matrix["gains"].items():
        cells = [
            "not run" if gains[k] is None else f"{gains[k]:+.1f} ({100 * gains[k] / matrix['gap'][k]:.0f}%)"
            for k in knobs
        ]
        lines.append(f"| {row if row == 'AdaBN alone' else f'`{row}`'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gain_table(preset: str, pairs: Sequence[tuple[str, str]], root=None) -> str:
    """One line per (method, baseline): the mIoU gain paired by seed, its 95 % interval over seeds, per seed, and
    the verdict: "above 0" (the bar each chapter's method has to pass), "below 0", "not distinguishable" (the
    interval spans 0) or "one seed"."""
    lines = [f"{'method':<24} {'over':<20} {'gain':>6}  {'95 % interval':>15}  per seed", "-" * 90]
    for method, base in pairs:
        g = paired_gain(preset, method, base, root)
        if g is None:
            lines.append(f"{method:<24} {base:<20} {'not measured':>12}")
            continue
        i = g["interval"]
        interval = "" if i.seeds < 2 else f"[{i.low:+.1f}, {i.high:+.1f}]"
        seeds = "  ".join(f"{s}: {v:+.1f}" for s, v in g["per_seed"].items())
        lines.append(f"{method:<24} {base:<20} {i.mean:+6.1f}  {interval:>15}  {seeds}   ({g['verdict']})")
    return "\n".join(lines)


def results_table(preset: str, methods: Sequence[str], root=None) -> str:
    """A text table of :func:`results_rows`; methods not measured yet say how to measure them.

    "gain" is the mean ± std over seeds of (method − source-only of the same seed); it is starred when its 95 %
    interval over seeds excludes 0. "gap" is the fraction of the source-only → oracle gap
    recovered, ours and published."""
    rows = results_rows(preset, methods, root)
    lines = [
        (
            f"{'method':<24} {'ours (' + preset + ')':>13} {'seeds':>5} {'gain (paired)':>14} {'gap':>5}   "
            f"{'paper':>5} {'gap':>5}  note"
        ),
        "-" * 110,
    ]
    missing = []
    for r in rows:
        gain, gap = "", ""
        if r["ours"] is None:
            ours = "not measured"
            missing.append(r["method"])
        else:
            std = "" if r["std"] is None or math.isnan(r["std"]) else f" ± {r['std']:.1f}"
            ours = f"{r['ours']:.1f}{std}"
            g = r["gain"]
            if g is not None:
                star = "*" if _distinguishable(g) else " "
                gstd = "" if math.isnan(g["std"]) else f" ± {g['std']:.1f}"
                gain = f"{g['mean']:+.1f}{gstd}{star}"
            gap = _percent(r["gap"])
        paper = "—" if r["paper"] is None else f"{r['paper']:.1f}"
        paper_gap = _percent(r["paper_gap"])
        lines.append(
            f"{r['method']:<24} {ours:>13} {r['seeds']:>5} {gain:>14} {gap:>5}   {paper:>5} {paper_gap:>5}  "
            f"{r['paper_note']}"
        )
    lines += [
        "",
        (
            "gain: mIoU minus source-only of the same seed, mean ± std over seeds (* its 95 % interval over "
            "seeds excludes 0); gap: share of the source-only → oracle gap recovered"
        ),
    ]
    if missing:
        lines.append(f"not measured yet — run `udalib reproduce --preset {preset} --methods {' '.join(missing)}`")
    return "\n".join(lines)
