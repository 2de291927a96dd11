"""Results files: every measured run the book quotes is a record in ``results/<preset>/<method>.json``.

Record format (ARCHITECTURE.md § Results files): {"method", "preset", "seed", "iters", "miou", "per_class_iou",
"classes", "checkpoint", "wall_s", "device", ...}, mIoU in percent. Chapters read these files; nothing is retyped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .evaluate import write_json

KEEP = ("method", "preset", "seed", "iters", "miou", "miou_by_classes", "per_class_iou", "classes", "checkpoint",
        "wall_s", "device", "git", "best_on_target_val")


def default_root() -> Path:
    """The repository's ``results/`` folder (the book reads it from any working directory)."""
    return Path(__file__).resolve().parent.parent / "results"


def record_from_metrics(metrics: dict) -> dict:
    return {k: metrics[k] for k in KEEP if k in metrics}


def append_record(record: dict, root: str | Path | None = None) -> Path:
    """Add `record` to its method's file; a record of the same seed and iteration count is replaced (a re-run
    of the same measurement), and the replacement is reported."""
    path = Path(root or default_root()) / record["preset"] / f"{record['method']}.json"
    records = json.loads(path.read_text()) if path.exists() else []
    same = [r for r in records if r["seed"] == record["seed"] and r["iters"] == record["iters"]]
    if same:
        print(f"{path}: replacing the earlier record of seed {record['seed']} ({same[0]['miou']:.2f} mIoU)")
    records = [r for r in records if r not in same] + [record]
    write_json(path, sorted(records, key=lambda r: (r["iters"], r["seed"])))
    return path


def load(preset: str, root: str | Path | None = None) -> dict[str, list[dict]]:
    """{method: [records]} for a preset (empty when nothing was measured yet)."""
    folder = Path(root or default_root()) / preset
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((x - mean) ** 2 for x in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
    return mean, std


def summary(preset: str, methods: list[str] | None = None, root: str | Path | None = None) -> list[dict]:
    """Per method: mean and sample std of mIoU over seeds, number of seeds, mean wall time."""
    rows = []
    data = load(preset, root)
    for method in methods or sorted(data):
        recs = data.get(method, [])
        if not recs:
            continue
        mean, std = _mean_std([r["miou"] for r in recs])
        rows.append({"method": method, "miou_mean": mean, "miou_std": std, "seeds": len(recs),
                     "iters": recs[0]["iters"], "wall_s": sum(r.get("wall_s", 0) for r in recs) / len(recs)})
    return rows


def paired_gain(preset: str, method: str, baseline: str = "source_only", root: str | Path | None = None) -> dict | None:
    """mIoU gain of `method` over `baseline`, paired by seed: each adapted run starts from its own seed's
    source-only model, so the per-seed difference removes the spread the two runs share.

    Returns {"mean", "std", "seeds", "per_seed": {seed: gain}, "spread", "clears"}, where "spread" is the larger of
    the two methods' seed-to-seed standard deviations and "clears" says whether the mean gain exceeds it over more
    than one seed (the bar each chapter's method has to pass); None without common seeds.
    """
    data = load(preset, root)
    ours = {r["seed"]: r["miou"] for r in data.get(method, [])}
    base = {r["seed"]: r["miou"] for r in data.get(baseline, [])}
    seeds = sorted(set(ours) & set(base))
    if not seeds:
        return None
    gains = {s: ours[s] - base[s] for s in seeds}
    mean, std = _mean_std(list(gains.values()))
    spreads = [sd for sd in (_mean_std(list(v.values()))[1] for v in (ours, base)) if math.isfinite(sd)]
    spread = max(spreads, default=float("nan"))
    return {"mean": mean, "std": std, "seeds": len(seeds), "per_seed": gains, "spread": spread,
            "clears": len(seeds) > 1 and mean > spread}


def gap_recovered(miou: float, source_only: float, oracle: float) -> float:
    """Fraction of the source-only → oracle gap a method closes: (mIoU − source-only) / (oracle − source-only)."""
    return (miou - source_only) / (oracle - source_only)


def format_summary(rows: list[dict]) -> str:
    lines = [f"{'method':<24} {'mIoU':>6} {'± std':>6} {'seeds':>5} {'iters':>6}"]
    lines += [f"{r['method']:<24} {r['miou_mean']:6.1f} {r['miou_std']:6.1f} {r['seeds']:5d} {r['iters']:6d}"
              for r in rows]
    return "\n".join(lines)
