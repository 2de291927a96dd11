"""Statistics over seeds: the mean and sample std of a result, the paired difference of two results, the share of
the source-only → oracle gap a result closes.

Each adapted run starts from its own seed's source-only model, so two results are compared seed by seed: the mean
of the per-seed differences with its 95 % Student t-interval, "not distinguishable" where the interval spans 0.
Example::

    from udalib.results import stats
    stats.paired_gain("quick", "advent", "source_only")   # {"mean": ..., "per_seed": {0: ..., 1: ..., 2: ...}, ...}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from scipy.stats import t as student_t

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


#: The confidence level of every paired interval the tables and findings report.
LEVEL = 0.95

Verdict = Literal["above 0", "below 0", "not distinguishable", "one seed"]


@dataclass(frozen=True)
class PairedInterval:
    """The mean of per-seed differences d_1..d_n with its Student t-interval: mean ± t_{(1+level)/2, n−1}·s/√n,
    s the sample std of the d_i. Example: d = [1, 2, 3] gives mean 2, s = 1 and the half-width
    t_{0.975, 2}/√3 = 4.303 · 0.577 = 2.484, so the interval [−0.48, 4.48] spans 0: "not distinguishable".
    One seed has no interval (half_width NaN, verdict "one seed")."""

    mean: float
    half_width: float
    seeds: int
    level: float = LEVEL

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def verdict(self) -> Verdict:
        """Whether the interval lies above 0, below it, or spans it ("not distinguishable" from no difference)."""
        if self.seeds < 2:
            return "one seed"
        if self.low > 0:
            return "above 0"
        return "below 0" if self.high < 0 else "not distinguishable"

    def text(self, digits: int = 1) -> str:
        """``+2.0 [-0.5, +4.5], 3 seeds`` (the mean alone for one seed), with `digits` decimals."""
        if self.seeds < 2:
            return f"{self.mean:+.{digits}f}, one seed"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}], {self.seeds} seeds"


def paired_interval(differences: Sequence[float], level: float = LEVEL) -> PairedInterval:
    """The paired comparison of two results over seeds: the per-seed `differences` (a − b of the same seed), their
    mean and its Student t-interval at `level` (:class:`PairedInterval`)."""
    if not differences:
        raise ValueError("differences: no common seed to compare")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    mean, std = mean_std(list(differences))
    n = len(differences)
    half = float(student_t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n) if n > 1 else float("nan")
    return PairedInterval(mean, half, n, level)


def paired_gain(preset: str, method: str, baseline: str = "source_only", root: str | Path | None = None) -> dict | None:
    """mIoU gain of `method` over `baseline`, paired by seed: each adapted run starts from its own seed's
    source-only model, so the per-seed difference removes the spread the two runs share.

    Returns {"mean", "std", "seeds", "per_seed": {seed: gain}, "interval": :class:`PairedInterval`, "verdict",
    "clears"}: the 95 % t-interval of the per-seed gains, its verdict ("above 0", "below 0", "not distinguishable",
    "one seed") and whether the gain is above 0 (the bar each chapter's method has to pass); None without common
    seeds.
    """
    data = load(preset, root)
    ours = {r["seed"]: r["miou"] for r in data.get(method, [])}
    base = {r["seed"]: r["miou"] for r in data.get(baseline, [])}
    seeds = sorted(set(ours) & set(base))
    if not seeds:
        return None
    gains = {s: ours[s] - base[s] for s in seeds}
    interval = paired_interval(list(gains.values()))
    return {
        "mean": interval.mean,
        "std": mean_std(list(gains.values()))[1],
        "seeds": len(seeds),
        "per_seed": gains,
        "interval": interval,
        "verdict": interval.verdict,
        "clears": interval.verdict == "above 0",
    }


def gap_recovered(miou: float, source_only: float, oracle: float) -> float:
    """Fraction of the source-only → oracle gap a method closes: (mIoU − source-only) / (oracle − source-only)."""
    return (miou - source_only) / (oracle - source_only)
