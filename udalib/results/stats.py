"""Statistics over seeds: the mean and sample std of a result, the paired difference of two results, the share of
the source-only → oracle gap a result closes.

Each adapted run starts from its own seed's source-only model, so two results are compared seed by seed.
Example::

    from udalib.results import stats
    stats.paired_gain("quick", "advent", "source_only")   # {"mean": ..., "per_seed": {0: ..., 1: ..., 2: ...}, ...}
"""

from __future__ import annotations

import math
from pathlib import Path

from .store import load


def mean_std(values: list[float]) -> tuple[float, float]:
    """(mean, sample std) of `values`; the std is NaN for one value."""
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
        mean, std = mean_std([r["miou"] for r in recs])
        rows.append(
            {
                "method": method,
                "miou_mean": mean,
                "miou_std": std,
                "seeds": len(recs),
                "iters": recs[0]["iters"],
                "wall_s": sum(r.get("wall_s", 0) for r in recs) / len(recs),
            }
        )
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
    mean, std = mean_std(list(gains.values()))
    spreads = [sd for sd in (mean_std(list(v.values()))[1] for v in (ours, base)) if math.isfinite(sd)]
    spread = max(spreads, default=float("nan"))
    return {
        "mean": mean,
        "std": std,
        "seeds": len(seeds),
        "per_seed": gains,
        "spread": spread,
        "clears": len(seeds) > 1 and mean > spread,
    }


def gap_recovered(miou: float, source_only: float, oracle: float) -> float:
    """Fraction of the source-only → oracle gap a method closes: (mIoU − source-only) / (oracle − source-only)."""
    return (miou - source_only) / (oracle - source_only)
