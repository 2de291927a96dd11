"""Results: the catalogue of result names, the measured records, and the tables that set them beside the papers.

Every result name the book quotes has one entry in :data:`udalib.results.catalogue.CATALOGUE`; every measured run
is a :class:`~udalib.record.Record` in ``results/<preset>/<name>.json`` (:mod:`udalib.results.store`);
:mod:`udalib.results.stats` compares results over seeds (paired 95 % intervals), :mod:`udalib.results.tables` and
:mod:`udalib.results.findings` show them, :mod:`udalib.results.claims` tests the papers' claims. Every name is
re-exported here (``results.findings(...)``). This package reports on what the trainer made:
the trainer and the methods import nothing from it. Example::

    from udalib import results
    results.catalogue_names(kind="ablation")       # ['adaptsegnet_multi_frozen_bn', ..., 'globallocal_all_pixels']
    results.published("advent")                    # (43.8, 'ADVENT paper, AdvEnt')
    print(results.results_table("quick", results.catalogue_names(chapter="advent")))
"""

from ..config import RunConfig
from ..record import Record, data_identity
from .catalogue import CATALOGUE, MATRIX_KNOBS, MATRIX_METHODS, ResultEntry, Source, catalogue_names, published
from .claims import CLAIMS, Claim, claim_rows, claims_markdown, verdict_counts
from .findings import findings
from .stats import PairedInterval, gap_recovered, paired_gain, paired_interval, summary
from .store import RecordConflictError, append_record, default_root, load, replacement_conflict
from .tables import (
    MIN_GAP,
    anatomy_table,
    comparison_markdown,
    format_summary,
    gain_table,
    knob_matrix,
    knob_matrix_markdown,
    per_class_means,
    results_rows,
    results_table,
    shift_anatomy,
)


def record_from_metrics(metrics: dict, cfg: RunConfig | None = None) -> dict:
    """The stored results record of a run's ``metrics.json`` (:meth:`Record.from_metrics`, as a dict)."""
    return Record.from_metrics(metrics, cfg).to_dict()


__all__ = [
    "CATALOGUE",
    "CLAIMS",
    "Claim",
    "PairedInterval",
    "claim_rows",
    "claims_markdown",
    "paired_interval",
    "verdict_counts",
    "MATRIX_KNOBS",
    "MATRIX_METHODS",
    "MIN_GAP",
    "Record",
    "RecordConflictError",
    "ResultEntry",
    "Source",
    "anatomy_table",
    "append_record",
    "catalogue_names",
    "comparison_markdown",
    "data_identity",
    "default_root",
    "findings",
    "format_summary",
    "gain_table",
    "gap_recovered",
    "knob_matrix",
    "knob_matrix_markdown",
    "load",
    "paired_gain",
    "per_class_means",
    "published",
    "record_from_metrics",
    "replacement_conflict",
    "results_rows",
    "results_table",
    "shift_anatomy",
    "summary",
]
