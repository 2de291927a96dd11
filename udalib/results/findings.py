"""What the records say about each method, as prose a chapter displays (no number is typed by hand).

Example::

    from IPython.display import Markdown
    from udalib import results
    Markdown(results.findings("quick", ["advent", "minent"]))
"""

from __future__ import annotations

from collections.abc import Sequence

from .catalogue import CATALOGUE
from .stats import paired_gain


def _verdict(g: dict) -> str:
    """The 95 % interval of a paired difference over seeds, and whether it tells the two results apart."""
    i = g["interval"]
    if i.verdict == "one seed":
        return "one seed, no interval"
    interval = f"95 % interval [{i.low:+.1f}, {i.high:+.1f}] over {i.seeds} seeds"
    return f"not distinguishable ({interval} spans 0)" if i.verdict == "not distinguishable" else interval


def _gain(g: dict) -> str:
    seeds = ", ".join(f"{v:+.1f}" for v in g["per_seed"].values())
    return f"{g['mean']:+.1f}" + (f" (seeds {seeds})" if g["seeds"] > 1 else "")


def findings(preset: str, methods: Sequence[str], baseline: str = "source_only", root=None) -> str:
    """What the records say about each of `methods`, as Markdown a chapter displays (no number is typed by hand):
    the gain over `baseline` paired by seed with its 95 % interval over seeds; the difference to AdaBN alone
    (``source_only_adabn``, BatchNorm statistics re-estimated on target, no training) paired by seed; the gain
    left when BatchNorm is frozen during adaptation (``<method>_frozen_bn``) and the gain of AdaBN after
    adaptation (``<method>_adabn``) where the catalogue has them. Methods without records say how to make them.
    """
    lines = []
    for m in methods:
        g = paired_gain(preset, m, baseline, root)
        if g is None:
            lines.append(f"* **{m}**: not measured yet (`udalib reproduce --preset {preset} --methods {m}`).")
            continue
        base_name = baseline.replace("_", "-")
        text = f"* **{m}** gains {_gain(g)} mIoU over {base_name}, {_verdict(g)}"
        alone = paired_gain(preset, m, "source_only_adabn", root)
        if alone is not None and m != "source_only_adabn":
            than = "more" if alone["mean"] > 0 else "less"
            text += (
                f"; it ends {abs(alone['mean']):.1f} {than} than AdaBN alone (the source-only model with target "
                f"BatchNorm statistics, no training), {_verdict(alone)}"
            )
        frozen = paired_gain(preset, f"{m}_frozen_bn", baseline, root) if f"{m}_frozen_bn" in CATALOGUE else None
        if frozen is not None:
            text += "; with BatchNorm frozen during adaptation (its loss alone) it "
            if frozen["clears"] and g["clears"]:
                text += f"gains {_gain(frozen)}, {100 * frozen['mean'] / g['mean']:.0f}% of its gain"
            else:
                text += (
                    f"changes mIoU by {_gain(frozen)}, {_verdict(frozen)}: the loss alone does not add to {base_name}"
                )
        after = paired_gain(preset, f"{m}_adabn", baseline, root) if f"{m}_adabn" in CATALOGUE else None
        if after is not None:
            text += f"; re-estimating BatchNorm on target after adaptation gives {_gain(after)} over {base_name}"
        lines.append(text + ".")
    return "\n".join(lines)
