"""The catalogue of result names: how each one's records are made, the published number it is compared with, and
the chapter that reads it.

A trained entry is a registered method (``udalib.methods.REGISTRY``), whose one-line description it takes from
the method's :class:`~udalib.methods.base.Variant`; ablations retrain a trained entry with overrides; evaluated
entries score trained models without training. Example::

    from udalib.results import catalogue
    catalogue.catalogue_names(kind="ablation")   # ['adaptsegnet_multi_frozen_bn', ..., 'globallocal_all_pixels', ...]
    catalogue.published("advent")                # (43.8, 'ADVENT paper, AdvEnt')
    catalogue.CATALOGUE["advent"].source         # Source(paper='ADVENT (Vu et al., CVPR 2019)', table=..., row=...)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from .. import methods
from ..config import SHIFT_KNOBS
from ..data import synthcity

Kind = Literal["trained", "ablation", "evaluated"]


class Source(NamedTuple):
    """Where a published number is printed: the paper (or repository), the table or figure, and its row."""

    paper: str
    table: str
    row: str


@dataclass(frozen=True)
class ResultEntry:
    """One result name: how its records are made, the published number it is compared with, where it is read.

    kind: "trained" (the runs of the registered method of that name), "ablation" (`of` retrained with
    `overrides`, the keyword overrides of the config resolver, e.g. ``{"train": {"bn_mode": "frozen"}}``) or
    "evaluated" (trained models evaluated without training, `how` says which way: "adabn", `of`'s final model with
    BatchNorm statistics re-estimated on target train; "ensemble", the upsampled logits of `members` averaged with
    equal weights; "shift", the anatomy of a SynthCity shift: `of` (source-only) and the oracle trained on the pair
    of ``overrides["data"]``, the record holding source-only, AdaBN and oracle). `published`: the published
    GTA5→Cityscapes mIoU (DeepLab-v2 ResNet-101 unless the note says otherwise), None where there is none;
    `source`: where it is printed; `published_note`: the short label the tables print beside it, or why there is
    none; `published_caveat`: where the published number measures something these records do not (another member
    of an ensemble), printed beside the number in the comparison table. `chapter`: the notebook stem that
    discusses it. `compared`: listed in the comparison chapter's table beside the published numbers (the BatchNorm
    controls of adapted models and the ablations are read there as paired gains).
    """

    name: str
    kind: Kind
    chapter: str
    description: str
    published: float | None = None
    published_note: str = ""
    source: Source | None = None
    published_caveat: str = ""  # what the published method does that these records do not (shown beside it)
    compared: bool = True
    of: str | None = None
    overrides: dict = field(default_factory=dict, hash=False)  # read-only: the resolver gets it as keywords
    how: Literal["ensemble", "adabn", "shift"] | None = None
    members: tuple[str, ...] = ()


def trained(name: str, chapter: str, published: float | None, note: str, source: Source | None = None) -> ResultEntry:
    """The entry of registered method `name`, described as the registry describes it."""
    return ResultEntry(name, "trained", chapter, methods.get(name).description, published, note, source)


def _catalogue(*entries: ResultEntry) -> dict[str, ResultEntry]:
    names = [e.name for e in entries]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"result names listed twice: {repeated}")
    return {e.name: e for e in entries}


#: One method of each of the five systems, run on the pair of each knob alone (one seed): which method closes which
#: kind of shift (the comparison chapter's matrix, :func:`udalib.results.tables.knob_matrix`).
MATRIX_METHODS = ("adaptsegnet_multi", "advent", "sdca", "bafft_step1", "ortho_cluster")
#: Class priors alone open no gap at quick scale (``shift_priors``: under ``MIN_GAP``), so no method runs on them.
MATRIX_KNOBS = tuple(k for k in SHIFT_KNOBS if k != "priors")

ADAPTSEGNET = "AdaptSegNet (Tsai et al., CVPR 2018)"
ADVENT = "ADVENT (Vu et al., CVPR 2019)"
MAXSQUARE = "MaxSquare (Chen et al., ICCV 2019), repository README"
BAFFT = "BAFFT (IEEE TIP 2022)"

#: Every result name, in the order runs are made: baselines first (source-only, the oracle, the AdaBN control),
#: then each chapter's methods, then the ablations, then AdaBN applied after adaptation. With ``bn_mode="frozen"``
#: the BatchNorm layers stay in eval mode during adaptation, so target batches cannot move their statistics and
#: what is left of the gain is the method's loss alone (``source_only_adabn`` is the statistics alone,
#: ``<method>_adabn`` both).
CATALOGUE: dict[str, ResultEntry] = _catalogue(
    trained(
        "source_only",
        "source_only",
        36.6,
        "AdaptSegNet paper's baseline, ResNet-101",
        Source(ADAPTSEGNET, "Table 1 (GTA5→Cityscapes)", "ResNet-101, without adaptation"),
    ),
    trained(
        "oracle",
        "source_only",
        65.1,
        "trained on Cityscapes, AdaptSegNet figure, ResNet-101",
        Source(ADAPTSEGNET, "repository figure iou_comparison_v2.png", "Oracle, ResNet-101"),
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
    trained(
        "adaptsegnet_single",
        "adaptsegnet",
        41.4,
        "AdaptSegNet single-level",
        Source(ADAPTSEGNET, "Table 1 (GTA5→Cityscapes)", "ResNet-101, single-level output-space adaptation"),
    ),
    trained(
        "adaptsegnet_multi",
        "adaptsegnet",
        42.4,
        "AdaptSegNet multi-level",
        Source(ADAPTSEGNET, "repository figure iou_comparison_v2.png", "multi-level, ResNet-101"),
    ),
    trained(
        "adaptsegnet_ls",
        "adaptsegnet",
        44.1,
        "AdaptSegNet LS-GAN, single-level (README figure)",
        Source(ADAPTSEGNET, "repository figure iou_comparison_v2.png", "LS-GAN, single-level, ResNet-101"),
    ),
    trained(
        "minent",
        "advent",
        42.3,
        "ADVENT paper, MinEnt",
        Source(ADVENT, "Table 1 (GTA5→Cityscapes)", "ResNet-101, MinEnt"),
    ),
    trained(
        "advent",
        "advent",
        43.8,
        "ADVENT paper, AdvEnt",
        Source(ADVENT, "Table 1 (GTA5→Cityscapes)", "ResNet-101, AdvEnt"),
    ),
    ResultEntry(
        "advent_minent_ensemble",
        "evaluated",
        "advent",
        "the upsampled logits of the AdvEnt and MinEnt models of a seed, averaged 0.5/0.5",
        45.5,
        "ensemble of AdvEnt and MinEnt+ER logits, 0.5/0.5",
        Source(ADVENT, "Table 1 (GTA5→Cityscapes)", "ResNet-101, AdvEnt+MinEnt (its MinEnt member is MinEnt+ER)"),
        published_caveat="with MinEnt+ER, ours plain MinEnt",
        of="advent",
        how="ensemble",
        members=("advent", "minent"),
    ),
    trained("globallocal", "globallocal", None, "no published number found"),
    trained("sdca_source", "sdca", None, "SDCA stage 1 (CE + 0.75 Lovász, single-level): not published"),
    trained("sdca", "sdca", None, "stage 3 alone: not published"),
    trained(
        "sdca_ssl",
        "sdca",
        52.9,
        "SDCA after self-training, ResNet-101 (VGG-16: 47.3)",
        Source("SDCA (Li et al., 2021), repository README", "released models, GTA5→Cityscapes", "ResNet-101 (SSL)"),
    ),
    trained(
        "bafft_step1",
        "bafft",
        None,
        "none for step 1: SIM's 49.2 (BAFFT Table II, Wang et al. [15]) includes SIM's self-training, a step-2 stage",
    ),
    trained(
        "bafft",
        "bafft",
        50.7,
        "BAFFT (IEEE TIP 2022), Table II, ResNet-101",
        Source(BAFFT, "Table II (GTA5→Cityscapes, ResNet-101)", "Ours"),
    ),
    trained(
        "maxsquare",
        "clustering",
        44.3,
        "MaxSquare README, ResNet-101",
        Source(MAXSQUARE, "GTA5→Cityscapes, ResNet-101", "MaxSquare"),
    ),
    trained(
        "maxsquare_iw",
        "clustering",
        45.2,
        "MaxSquare README, MaxSquare+IW, ResNet-101",
        Source(MAXSQUARE, "GTA5→Cityscapes, ResNet-101", "MaxSquare+IW"),
    ),
    trained(
        "ortho_cluster",
        "clustering",
        None,
        "the paper's tables could not be read; expected between MaxSquare+IW and BAFFT",
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
