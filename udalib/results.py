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


def summary(preset: str, methods: list[str] | None = None, root: str | Path | None = None) -> list[dict]:
    """Per method: mean and sample std of mIoU over seeds, number of seeds, mean wall time."""
    rows = []
    data = load(preset, root)
    for method in methods or sorted(data):
        recs = data.get(method, [])
        if not recs:
            continue
        m = [r["miou"] for r in recs]
        mean = sum(m) / len(m)
        std = math.sqrt(sum((x - mean) ** 2 for x in m) / (len(m) - 1)) if len(m) > 1 else float("nan")
        rows.append({"method": method, "miou_mean": mean, "miou_std": std, "seeds": len(m),
                     "iters": recs[0]["iters"], "wall_s": sum(r.get("wall_s", 0) for r in recs) / len(recs)})
    return rows


def format_summary(rows: list[dict]) -> str:
    lines = [f"{'method':<24} {'mIoU':>6} {'± std':>6} {'seeds':>5} {'iters':>6}"]
    lines += [f"{r['method']:<24} {r['miou_mean']:6.1f} {r['miou_std']:6.1f} {r['seeds']:5d} {r['iters']:6d}"
              for r in rows]
    return "\n".join(lines)
