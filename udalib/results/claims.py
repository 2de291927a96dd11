"""The papers' qualitative claims that the records can test, and the table that tests them.

Each :class:`Claim` says that result `better` beats result `worse` (both catalogue names). Its published numbers
and their sources are the catalogue's (:data:`udalib.results.catalogue.CATALOGUE`), not typed again here; its
measured side is the paired difference over seeds with its 95 % t-interval (:func:`udalib.results.stats.paired_gain`).
The verdict: "reproduced" where the interval lies above 0, "reversed" where it lies below, "not distinguishable"
where it spans 0, "one seed" with a single common seed. Example::

    from IPython.display import Markdown
    from udalib.results import claims
    Markdown(claims.claims_markdown("quick"))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .catalogue import CATALOGUE, Source
from .stats import paired_gain

ADAPTSEGNET = "AdaptSegNet (Tsai et al., CVPR 2018)"
ADVENT = "ADVENT (Vu et al., CVPR 2019)"
GLOBALLOCAL = "global-local discriminators (ICASSP 2022)"
SDCA = "SDCA (Li et al., 2021)"
BAFFT = "BAFFT (IEEE TIP 2022)"
MAXSQUARE = "MaxSquare (Chen et al., ICCV 2019)"
CLUSTERING = "orthogonal clustered embeddings (arXiv 2011.12616)"


@dataclass(frozen=True)
class Claim:
    """`paper` claims that result `better` beats result `worse` (catalogue names); `what` says it in words."""

    paper: str
    what: str
    better: str
    worse: str

    def __post_init__(self) -> None:
        unknown = [n for n in (self.better, self.worse) if n not in CATALOGUE]
        if unknown:
            raise ValueError(f"claim {self.what!r}: {unknown} not in the results catalogue")


#: The methods each paper sets beside source-only (every one of them claims to beat it).
_ADAPTED = (
    ("adaptsegnet_single", ADAPTSEGNET),
    ("adaptsegnet_multi", ADAPTSEGNET),
    ("adaptsegnet_ls", ADAPTSEGNET),
    ("minent", ADVENT),
    ("advent", ADVENT),
    ("globallocal", GLOBALLOCAL),
    ("sdca", SDCA),
    ("bafft_step1", BAFFT),
    ("bafft", BAFFT),
    ("maxsquare", MAXSQUARE),
    ("maxsquare_iw", MAXSQUARE),
    ("ortho_cluster", CLUSTERING),
)

#: Every claim of the five papers (and the two they build on) that the quick records can test.
CLAIMS: tuple[Claim, ...] = (
    Claim(ADAPTSEGNET, "multi-level alignment beats single-level", "adaptsegnet_multi", "adaptsegnet_single"),
    Claim(ADAPTSEGNET, "the LS-GAN loss beats the BCE GAN loss (single-level)", "adaptsegnet_ls", "adaptsegnet_single"),
    Claim(ADVENT, "AdvEnt beats MinEnt", "advent", "minent"),
    Claim(ADVENT, "the AdvEnt+MinEnt ensemble beats AdvEnt", "advent_minent_ensemble", "advent"),
    Claim(GLOBALLOCAL, "the global-local discriminators beat AdvEnt's global one", "globallocal", "advent"),
    Claim(SDCA, "stage 3 (the contrastive bound) beats its supervised stage 1", "sdca", "sdca_source"),
    Claim(SDCA, "self-training beats stage 3", "sdca_ssl", "sdca"),
    Claim(BAFFT, "step 1's (SIM's) stuff and instance banks beat the GAN alone", "bafft_step1", "adaptsegnet_single"),
    Claim(BAFFT, "step 2 (ISIA, AIM, pseudo-labels) beats step 1", "bafft", "bafft_step1"),
    Claim(MAXSQUARE, "image-wise weighting (IW) beats plain MaxSquare", "maxsquare_iw", "maxsquare"),
    Claim(CLUSTERING, "the clustering loss adds to IW-MaxSquare", "ortho_cluster_clustering_only", "maxsquare_iw"),
    Claim(CLUSTERING, "orthogonality adds to clustering", "ortho_cluster_no_sparsity", "ortho_cluster_clustering_only"),
    Claim(CLUSTERING, "sparsity adds to clustering and orthogonality", "ortho_cluster", "ortho_cluster_no_sparsity"),
    *(Claim(paper, f"{name} beats source-only", name, "source_only") for name, paper in _ADAPTED),
)

VERDICTS = {"above 0": "reproduced", "below 0": "reversed", "not distinguishable": "not distinguishable"}


def claim_rows(preset: str, root: str | Path | None = None, claims: Sequence[Claim] = CLAIMS) -> list[dict]:
    """One row per claim: "claim", "paper", "better", "worse", the published numbers of both ("published": (a, b)
    or None where either has none) with their "sources", the paired difference over seeds ("here": the dict of
    :func:`~udalib.results.stats.paired_gain`, None where not measured) and the "verdict" ("reproduced",
    "reversed", "not distinguishable", "one seed" or "not measured")."""
    rows = []
    for c in claims:
        better, worse = CATALOGUE[c.better], CATALOGUE[c.worse]
        both = better.published is not None and worse.published is not None
        g = paired_gain(preset, c.better, c.worse, root)
        verdict = "not measured" if g is None else VERDICTS.get(g["verdict"], g["verdict"])
        rows.append(
            {
                "claim": c.what,
                "paper": c.paper,
                "better": c.better,
                "worse": c.worse,
                "published": (better.published, worse.published) if both else None,
                "sources": (better.source, worse.source) if both else None,
                "here": g,
                "verdict": verdict,
            }
        )
    return rows


def _cite(a: Source, b: Source) -> str:
    """Where two published numbers are printed, the shared paper and table named once."""
    if (a.paper, a.table) == (b.paper, b.table):
        return f"{a.paper}, {a.table}: {a.row} vs {b.row}"
    return f"{a.paper}, {a.table}, {a.row}; {b.paper}, {b.table}, {b.row}"


def claims_markdown(preset: str, root: str | Path | None = None, claims: Sequence[Claim] = CLAIMS) -> str:
    """The claims table as Markdown: claim | published | here (paired mean, 95 % interval, seeds) | verdict."""
    lines = [
        f"| claim | published | here ({preset}: paired mean, 95 % interval, seeds) | verdict |",
        "|:--|:--|:--|:--|",
    ]
    for r in claim_rows(preset, root, claims):
        claim = f"{r['paper']}: {r['claim']} (`{r['better']}` vs `{r['worse']}`)"
        if r["published"] is None:
            published = "—"
        else:
            (a, b), sources = r["published"], r["sources"]
            published = f"{a:.1f} vs {b:.1f} ({_cite(*sources)})"
        # two decimals: several of the quick differences are a few hundredths of a point
        here = "not measured" if r["here"] is None else r["here"]["interval"].text(digits=2)
        lines.append(f"| {claim} | {published} | {here} | {r['verdict']} |")
    return "\n".join(lines)


def verdict_counts(preset: str, root: str | Path | None = None, claims: Sequence[Claim] = CLAIMS) -> dict[str, int]:
    """How many claims get each verdict, for prose that quotes the table without typing a number."""
    counts: dict[str, int] = {}
    for r in claim_rows(preset, root, claims):
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    return counts
