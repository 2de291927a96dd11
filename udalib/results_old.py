"""Results: the catalogue of result names, the measured records, and the tables that set them beside the papers.

Every result name the book quotes has one :class:`ResultEntry` in :data:`CATALOGUE`: how its records are made (a
trained method, an ablation of one, or trained models evaluated without training), the published GTA5→Cityscapes
number it is compared with, and the chapter that discusses it. Every measured run is a record in
``results/<preset>/<name>.json``.

Record format (ARCHITECTURE.md § Results files): {"method", "preset", "seed", "iters", "miou", "per_class_iou",
"classes", "checkpoint", "wall_s", "device", "data", ...}, mIoU in percent, "data" what it was measured on
(:func:`data_identity`). A record replaces the one of the same method, seed and iteration count only when both were
measured on the same data (or when asked to, ``replace=True``). Chapters read these files; nothing is retyped.
Example::

    from udalib import results
    results.catalogue_names(kind="ablation")       # ['adaptsegnet_multi_frozen_bn', ..., 'globallocal_all_pixels']
    results.published("advent")                    # (43.8, 'ADVENT paper, AdvEnt')
    print(results.results_table("quick", results.catalogue_names(chapter="advent")))
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .config import SHIFT_KNOBS, RunConfig
from .data import synthcity
from .files import write_json

Kind = Literal["trained", "ablation", "evaluated"]


@dataclass(frozen=True)
class ResultEntry:
    """One result name: how its records are made, the published number it is compared with, where it is read.

    kind: "trained" (the runs of the method of that name), "ablation" (`of` retrained with
    `overrides`, the keyword overrides of the config resolver, e.g. ``{"train": {"bn_mode": "frozen"}}``) or
    "evaluated" (trained models evaluated without training, `how` says which way: "adabn", `of`'s final model with
    BatchNorm statistics re-estimated on target train; "ensemble", the upsampled logits of `members` averaged with
    equal weights; "shift", the anatomy of a SynthCity shift: `of` (source-only) and the oracle trained on the pair
    of ``overrides["data"]``, the record holding source-only, AdaBN and oracle). `published`: the published
    GTA5→Cityscapes mIoU (DeepLab-v2 ResNet-101 unless the note says otherwise), None where there is none;
    `published_note`: where it comes from, or why there is none.
    `chapter`: the notebook stem that discusses it. `compared`: listed in the comparison chapter's table beside the
    published numbers (the BatchNorm controls of adapted models and the ablations are read there as paired gains).
    """

    name: str
    kind: Kind
    chapter: str
    description: str
    published: float | None = None
    published_note: str = ""
    compared: bool = True
    of: str | None = None
    overrides: dict = field(default_factory=dict, hash=False)  # read-only: the resolver gets it as keywords
    how: Literal["ensemble", "adabn", "shift"] | None = None
    members: tuple[str, ...] = ()


def _catalogue(*entries: ResultEntry) -> dict[str, ResultEntry]:
    names = [e.name for e in entries]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"result names listed twice: {repeated}")
    return {e.name: e for e in entries}


#: One method of each of the five systems, run on the pair of each knob alone (one seed): which method closes which
#: kind of shift (the comparison chapter's matrix, :func:`knob_matrix`).
MATRIX_METHODS = ("adaptsegnet_multi", "advent", "sdca", "bafft_step1", "ortho_cluster")
#: Class priors alone open no gap at quick scale (``shift_priors``: under :data:`MIN_GAP`), so no method runs on them.
MATRIX_KNOBS = tuple(k for k in SHIFT_KNOBS if k != "priors")

#: Every result name, in the order runs are made: baselines first (source-only, the oracle, the AdaBN control),
#: then each chapter's methods, then the ablations, then AdaBN applied after adaptation. Published numbers: specs
#: adaptsegnet_advent_globallocal.md §8, sdca.md §9. With ``bn_mode="frozen"`` the BatchNorm layers stay in eval
#: mode during adaptation, so target batches cannot move their statistics and what is left of the gain is the
#: method's loss alone (``source_only_adabn`` is the statistics alone, ``<method>_adabn`` both).
CATALOGUE: dict[str, ResultEntry] = _catalogue(
    ResultEntry(
        "source_only",
        "trained",
        "source_only",
        "CE on labelled source images: the lower bound",
        36.6,
        "AdaptSegNet paper's baseline, ResNet-101",
    ),
    ResultEntry(
        "oracle",
        "trained",
        "source_only",
        "CE on target train labels: the upper bound",
        65.1,
        "trained on Cityscapes, AdaptSegNet figure, ResNet-101",
    ),
    ResultEntry(
        "source_only_adabn",
        "evaluated",
        "results",
        "the source-only model with BatchNorm statistics re-estimated on target train, no training",
        None,
        "control: source-only with target BN statistics (AdaBN), no training",
        of="source_only",
        how="adabn",
    ),
    ResultEntry(
        "adaptsegnet_single",
        "trained",
        "adaptsegnet",
        "AdaptSegNet, one discriminator on layer4 softmax",
        41.4,
        "AdaptSegNet single-level",
    ),
    ResultEntry(
        "adaptsegnet_multi",
        "trained",
        "adaptsegnet",
        "AdaptSegNet, discriminators on layer3 and layer4 softmax",
        42.4,
        "AdaptSegNet multi-level",
    ),
    ResultEntry(
        "adaptsegnet_ls",
        "trained",
        "adaptsegnet",
        "AdaptSegNet single-level with the least-squares GAN loss",
        44.1,
        "AdaptSegNet LS-GAN, single-level (README figure)",
    ),
    ResultEntry(
        "minent",
        "trained",
        "advent",
        "ADVENT's MinEnt: entropy minimisation on target predictions",
        42.3,
        "ADVENT paper, MinEnt",
    ),
    ResultEntry(
        "advent",
        "trained",
        "advent",
        "ADVENT: adversarial alignment of self-information maps",
        43.8,
        "ADVENT paper, AdvEnt",
    ),
    ResultEntry(
        "advent_minent_ensemble",
        "evaluated",
        "advent",
        "the upsampled logits of the AdvEnt and MinEnt models of a seed, averaged 0.5/0.5",
        45.5,
        "ensemble of AdvEnt and MinEnt+ER logits, 0.5/0.5",
        of="advent",
        how="ensemble",
        members=("advent", "minent"),
    ),
    ResultEntry(
        "globallocal",
        "trained",
        "globallocal",
        "AdvEnt's patch discriminator plus a per-pixel one on the same self-information maps",
        None,
        "no published number found",
    ),
    ResultEntry(
        "sdca_source",
        "trained",
        "sdca",
        "SDCA stage 1: CE + 0.75 Lovász-softmax on source images",
        None,
        "SDCA stage 1 (CE + 0.75 Lovász, single-level): not published",
    ),
    ResultEntry(
        "sdca",
        "trained",
        "sdca",
        "SDCA stage 3: semantic distribution-aware contrastive adaptation",
        None,
        "stage 3 alone: not published",
    ),
    ResultEntry(
        "sdca_ssl",
        "trained",
        "sdca",
        "SDCA after self-training on class-wise thresholded pseudo-labels",
        52.9,
        "SDCA after self-training, ResNet-101 (VGG-16: 47.3)",
    ),
    ResultEntry(
        "bafft_step1",
        "trained",
        "bafft",
        "BAFFT step 1 (SIM): output-space GAN + stuff-bank and instance-bank alignment",
        49.2,
        "SIM (Wang et al., CVPR 2020) in BAFFT's Table II; BAFFT's step 1 is SIM",
    ),
    ResultEntry(
        "bafft",
        "trained",
        "bafft",
        "BAFFT step 2: step 1's terms + ISIA + AIM + CE on the step-1 model's pseudo-labels",
        50.7,
        "BAFFT (IEEE TIP 2022), Table II, ResNet-101",
    ),
    ResultEntry(
        "maxsquare",
        "trained",
        "clustering",
        "MaxSquare: maximum squares loss on target predictions",
        44.3,
        "MaxSquare README, ResNet-101",
    ),
    ResultEntry(
        "maxsquare_iw",
        "trained",
        "clustering",
        "MaxSquare with image-wise class-balanced weights (IW, r = 0.2)",
        45.2,
        "MaxSquare README, MaxSquare+IW, ResNet-101",
    ),
    ResultEntry(
        "ortho_cluster",
        "trained",
        "clustering",
        "orthogonal and clustered embeddings: IW-MaxSquare + clustering, orthogonality and sparsity of prototypes",
        None,
        "the paper's tables could not be read (spec §B9); expected between MaxSquare+IW and BAFFT",
    ),
    *(
        ResultEntry(
            f"{m}_frozen_bn",
            "ablation",
            "results",
            f"{m} trained with every BatchNorm layer in eval mode: the loss alone",
            compared=False,
            of=m,
            overrides={"train": {"bn_mode": "frozen"}},
        )
        for m in ("adaptsegnet_multi", "minent", "advent", "globallocal", "sdca", "bafft", "ortho_cluster")
    ),
    ResultEntry(
        "globallocal_all_pixels",
        "ablation",
        "globallocal",
        "global-local whose local branch scores every pixel, as the paper preset does (slow on a CPU)",
        compared=False,
        of="globallocal",
        overrides={"method": {"local_pixels": None}},
    ),
    ResultEntry(
        "ortho_cluster_clustering_only",
        "ablation",
        "clustering",
        "IW-MaxSquare + the clustering loss (orthogonality and sparsity off)",
        compared=False,
        of="ortho_cluster",
        overrides={"method": {"lambda_ortho": 0.0, "lambda_sparse": 0.0}},
    ),
    ResultEntry(
        "ortho_cluster_no_sparsity",
        "ablation",
        "clustering",
        "IW-MaxSquare + clustering + orthogonality (sparsity off)",
        compared=False,
        of="ortho_cluster",
        overrides={"method": {"lambda_sparse": 0.0}},
    ),
    *(
        ResultEntry(
            f"{m}_adabn",
            "evaluated",
            "results",
            f"{m}'s final model with BatchNorm statistics re-estimated on target train: loss and statistics",
            compared=False,
            of=m,
            how="adabn",
        )
        for m in ("adaptsegnet_multi", "advent", "bafft", "ortho_cluster")
    ),
    *(
        ResultEntry(
            f"{m}_on_{knob}",
            "ablation",
            "results",
            f"{m} adapting to the SynthCity pair that differs in {knob} alone (from the default source-only model)",
            compared=False,
            of=m,
            overrides={"data": {"synthcity_shift": synthcity.Shift.only(knob).as_tuple()}},
        )
        for m in MATRIX_METHODS
        for knob in MATRIX_KNOBS
    ),
    *(
        ResultEntry(
            f"shift_{knob}",
            "evaluated",
            "data",
            f"source-only, AdaBN and oracle on a SynthCity pair that differs in {knob} alone",
            compared=False,
            of="source_only",
            overrides={"data": {"synthcity_shift": synthcity.Shift.only(knob).as_tuple()}},
            how="shift",
        )
        for knob in SHIFT_KNOBS
    ),
)


def catalogue_names(kind: Kind | None = None, chapter: str | None = None, compared: bool | None = None) -> list[str]:
    """The catalogue's names in run order; only those of `kind`, of `chapter`, (not) `compared`, where given."""
    for key, value in (("kind", kind), ("chapter", chapter)):
        known = {getattr(e, key) for e in CATALOGUE.values()}
        if value is not None and value not in known:
            raise ValueError(f"no result of {key} {value!r}; expected one of {sorted(known)}")
    return [
        n
        for n, e in CATALOGUE.items()
        if kind in (None, e.kind) and chapter in (None, e.chapter) and compared in (None, e.compared)
    ]


def published(name: str) -> tuple[float | None, str]:
    """(published mIoU or None, where it comes from) of a result name; (None, "") for a name the catalogue does
    not know (a run of one's own)."""
    entry = CATALOGUE.get(name)
    return (None, "") if entry is None else (entry.published, entry.published_note)


KEEP = (
    "method",
    "preset",
    "seed",
    "iters",
    "miou",
    "miou_by_classes",
    "per_class_iou",
    "classes",
    "checkpoint",
    "wall_s",
    "device",
    "threads",
    "git",
    "best_on_target_val",
    "data",
)


class RecordConflictError(ValueError):
    """A record would replace one measured on other (or unknown) data; ``replace=True`` replaces it anyway."""


def default_root() -> Path:
    """The repository's ``results/`` folder (the book reads it from any working directory)."""
    return Path(__file__).resolve().parent.parent / "results"


def data_identity(cfg: RunConfig) -> dict:
    """What a run of `cfg` is measured on, for its records: the preset, the class protocol, the source and target
    datasets and, for SynthCity, the generator version and the set's spec as its ``synthcity.json`` stores it (seed,
    size, counts; where the set does not exist yet, the spec it will be generated with), for real data the roots'
    resolved paths.

    Example: ``{"preset": "quick", "protocol": "cityscapes19", "source": "synthcity", "target": "synthcity",
    "synthcity": {"version": 2, "seed": 0, "height": 128, "width": 256, "n_source": 2000, ...}}``.
    """
    d = cfg.data
    ident: dict = {"preset": cfg.preset, "protocol": d.protocol, "source": d.source, "target": d.target}
    if d.eval_label_size is not None:  # scored on resized labels, not at full resolution: say so
        ident["eval_label_size"] = list(d.eval_label_size)
    for role, name, root in (("source", d.source, d.source_root), ("target", d.target, d.target_root)):
        if name == "synthcity":
            ident["synthcity"] = _synthcity_identity(cfg, root)
        else:
            ident[f"{role}_root"] = None if root is None else str(Path(root).resolve())
    return ident


def _synthcity_identity(cfg: RunConfig, root: str | None) -> dict:
    d = cfg.data
    cache = synthcity.cache_dir(d)
    root = Path(root) if root is not None else cache
    meta = root / synthcity.META_FILE
    in_cache = root.resolve() == cache.resolve()  # the cache folder's name is keyed by the generator version
    if meta.is_file():
        spec = json.loads(meta.read_text())
    elif in_cache:  # generated on first use with the spec the cache uses (udalib.data.domains.ensure_synthcity)
        spec = synthcity.stored_meta(synthcity.spec_for(d))
    else:
        return {"version": "unknown", "root": str(root.resolve()), "spec": "missing"}
    version = spec.pop("version", synthcity.VERSION if in_cache else "unknown")
    return {"version": version, **spec}


def record_from_metrics(metrics: dict, cfg: RunConfig | None = None) -> dict:
    """The results record of a run's metrics (the fields of :data:`KEEP`); `cfg` fills in "data" where the metrics
    lack it (runs trained before records carried it)."""
    rec = {k: metrics[k] for k in KEEP if k in metrics}
    if "data" not in rec and cfg is not None:
        rec["data"] = data_identity(cfg)
    return rec


def _describe(record: dict) -> str:
    data = record.get("data")
    if data is None:
        return "unknown data (the record has no 'data' field: it predates data identities)"
    return json.dumps(data, sort_keys=True)


def _file(record: dict, root: str | Path | None) -> Path:
    return Path(root or default_root()) / record["preset"] / f"{record['method']}.json"


def _same_run(a: dict, b: dict) -> bool:
    return a["seed"] == b["seed"] and a["iters"] == b["iters"]


def _conflict(path: Path, old: dict, new: dict) -> str | None:
    """Why `new` may not silently replace `old` (the same method, seed and iterations), or None."""
    if old.get("data") is not None and old.get("data") == new.get("data"):
        return None
    return (
        f"{path} already holds the record of {old['method']} seed {old['seed']} at {old['iters']} iterations "
        f"({old['miou']:.2f} mIoU) measured on {_describe(old)}; the new one is measured on {_describe(new)}"
    )


def replacement_conflict(record: dict, root: str | Path | None = None) -> str | None:
    """Why :func:`append_record` would refuse `record` (which needs "method", "preset", "seed", "iters" and
    "data"): a record of the same method, seed and iteration count measured on other or unknown data; else None."""
    path = _file(record, root)
    records = json.loads(path.read_text()) if path.exists() else []
    return next((c for r in records if _same_run(r, record) and (c := _conflict(path, r, record))), None)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (POSIX flock), so that concurrent appends never drop a record."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):  # no flock (Windows): appends are still atomic, only not serialised
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def append_record(record: dict, root: str | Path | None = None, *, replace: bool = False) -> Path:
    """Add `record` to its method's file, written atomically (concurrent appends are serialised).

    A record of the same seed and iteration count is replaced (a re-run of the same measurement, reported) when
    both carry the same "data" identity (:func:`data_identity`). One measured on other data, or on unknown data
    (a record without "data"), raises RecordConflictError naming both, unless `replace`: then the replacement is
    reported with both identities and the old record is kept in ``<preset>/replaced/<method>.json`` (never lost;
    the chapters read only ``<preset>/*.json``).
    """
    path = _file(record, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        records = json.loads(path.read_text()) if path.exists() else []
        same = [r for r in records if _same_run(r, record)]
        for old in same:
            conflict = _conflict(path, old, record)
            if conflict and not replace:
                raise RecordConflictError(
                    f"refusing to replace a record: {conflict}. Replace it explicitly (replace=True; "
                    "the command line's --replace) or write to another results folder."
                )
            print(f"{path}: replacing the earlier record of seed {record['seed']} ({old['miou']:.2f} mIoU)")
            if conflict:
                print(f"  it was measured on {_describe(old)}; the new one on {_describe(record)}")
                archive = path.parent / "replaced" / path.name
                kept = json.loads(archive.read_text()) if archive.exists() else []
                write_json(archive, kept + [old])
                print(f"  the earlier record is kept in {archive}")
        records = [r for r in records if not _same_run(r, record)] + [record]
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
    mean, std = _mean_std(list(gains.values()))
    spreads = [sd for sd in (_mean_std(list(v.values()))[1] for v in (ours, base)) if math.isfinite(sd)]
    spread = max(spreads, default=float("nan"))
    return {
        "mean": mean,
        "std": std,
        "seeds": len(seeds),
        "per_seed": gains,
        "spread": spread,
        "clears": len(seeds) > 1 and mean > spread,
    }


def _verdict(g: dict) -> str:
    """Whether a paired difference (either sign) is beyond the seed-to-seed spread of the two runs."""
    if g["seeds"] == 1:
        return "one seed, no spread to compare with"
    return ("beyond" if abs(g["mean"]) > g["spread"] else "within") + f" the seed-to-seed spread ({g['spread']:.1f})"


def _gain(g: dict) -> str:
    seeds = ", ".join(f"{v:+.1f}" for v in g["per_seed"].values())
    return f"{g['mean']:+.1f}" + (f" (seeds {seeds})" if g["seeds"] > 1 else "")


def findings(preset: str, methods: Sequence[str], baseline: str = "source_only", root=None) -> str:
    """What the records say about each of `methods`, as Markdown a chapter displays (no number is typed by hand):
    the gain over `baseline` paired by seed with the seed-spread verdict; the difference to AdaBN alone
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
            if frozen["mean"] > 0 and g["mean"] > 0:
                text += f"gains {_gain(frozen)}, {100 * frozen['mean'] / g['mean']:.0f}% of its gain"
            else:
                text += f"changes mIoU by {_gain(frozen)}: the loss alone does not add to source-only"
        after = paired_gain(preset, f"{m}_adabn", baseline, root) if f"{m}_adabn" in CATALOGUE else None
        if after is not None:
            text += f"; re-estimating BatchNorm on target after adaptation gives {_gain(after)} over {base_name}"
        lines.append(text + ".")
    return "\n".join(lines)


def gap_recovered(miou: float, source_only: float, oracle: float) -> float:
    """Fraction of the source-only → oracle gap a method closes: (mIoU − source-only) / (oracle − source-only)."""
    return (miou - source_only) / (oracle - source_only)


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
    mean = lambda values: _mean_std(values)[0]  # noqa: E731
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


# ----------------------------------------------------------------------------------------------------------------
# Tables: our measured numbers beside the published ones


def results_rows(preset: str, methods: Sequence[str], root=None) -> list[dict]:
    """One row per method: our mean mIoU ± std over seeds from ``results/<preset>/`` (None if not measured yet),
    the gain over source-only paired by seed, the fraction of the source-only → oracle gap recovered (ours and
    published), and the published GTA5→Cityscapes number (:func:`published`)."""
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
                "vs_adabn": None if r is None else paired_gain(preset, m, "source_only_adabn", root),
                "wall_s": None if r is None else r["wall_s"],
            }
        )
    return rows


def _percent(share: float | None) -> str:
    """A share of the gap as a whole percentage, empty where there is none."""
    return "" if share is None else f"{100 * share:.0f}%"


def _signed(g: dict | None) -> str:
    """A paired difference for a Markdown table: mean ± std, bold where it is beyond the seed-to-seed spread."""
    if g is None:
        return ""
    text = f"{g['mean']:+.1f}" + ("" if math.isnan(g["std"]) else f" ± {g['std']:.1f}")
    return f"**{text}**" if g["seeds"] > 1 and abs(g["mean"]) > g["spread"] else text


def comparison_markdown(preset: str, methods: Sequence[str], root=None) -> str:
    """The comparison chapter's table as Markdown, one row per method of :func:`results_rows`: our mIoU (mean ±
    std over seeds), the gains paired by seed over source-only and over AdaBN alone (bold where beyond the
    seed-to-seed spread of the two runs), the share of the source-only → oracle gap recovered, the published number
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
            "—" if r["paper"] is None else f"{r['paper']:.1f}",
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
    gap (oracle − source-only), what AdaBN alone gains, and what each method of :data:`MATRIX_METHODS` gains
    (records ``<method>_on_<knob>``), all over the same source-only model scored on that pair, paired by seed.

    Returns {"knobs": [...], "gap": {knob: mIoU}, "gains": {row: {knob: mIoU or None}}} with the rows "AdaBN alone"
    and each method; a knob without a ``shift_<knob>`` record is left out, a method not run on a knob is None.
    """
    data = load(preset, root)
    shifts = {k: {r["seed"]: r for r in data.get(f"shift_{k}", [])} for k in MATRIX_KNOBS}
    knobs = [k for k in MATRIX_KNOBS if shifts[k]]
    mean = lambda values: _mean_std(values)[0] if values else None  # noqa: E731
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
    """One line per (method, baseline): the mIoU gain paired by seed, per seed, and whether it clears the
    seed-to-seed spread of both runs (the bar each chapter's method has to pass)."""
    lines = [f"{'method':<24} {'over':<20} {'gain':>12}  {'spread':>6}  per seed", "-" * 90]
    for method, base in pairs:
        g = paired_gain(preset, method, base, root)
        if g is None:
            lines.append(f"{method:<24} {base:<20} {'not measured':>12}")
            continue
        gstd = "" if math.isnan(g["std"]) else f" ± {g['std']:.1f}"
        verdict = "one seed" if g["seeds"] == 1 else "clears it" if g["clears"] else "within it"
        seeds = "  ".join(f"{s}: {v:+.1f}" for s, v in g["per_seed"].items())
        lines.append(f"{method:<24} {base:<20} {g['mean']:+7.1f}{gstd:>5}  {g['spread']:6.1f}  {seeds}   ({verdict})")
    return "\n".join(lines)


def results_table(preset: str, methods: Sequence[str], root=None) -> str:
    """A text table of :func:`results_rows`; methods not measured yet say how to measure them.

    "gain" is the mean ± std over seeds of (method − source-only of the same seed); it is starred when it
    exceeds the seed-to-seed spread of either run. "gap" is the fraction of the source-only → oracle gap
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
                star = "*" if g["clears"] else " "
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
            "gain: mIoU minus source-only of the same seed, mean ± std over seeds (* above the seed-to-seed "
            "spread); gap: share of the source-only → oracle gap recovered"
        ),
    ]
    if missing:
        lines.append(f"not measured yet — run `udalib reproduce --preset {preset} --methods {' '.join(missing)}`")
    return "\n".join(lines)
