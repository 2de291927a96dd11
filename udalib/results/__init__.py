"""Results: the catalogue of result names, the measured records, and the tables that set them beside the papers.

Every result name the book quotes has one entry in :data:`CATALOGUE` (:mod:`.catalogue`); every measured run is a
:class:`~udalib.record.Record` in ``results/<preset>/<name>.json`` (:mod:`.store`); :mod:`.stats` compares
results over seeds, :mod:`.tables` and :mod:`.findings` show them. This package reports on what the trainer made:
the trainer and the methods import nothing from it. Example::

    from udalib import results
    results.catalogue_names(kind="ablation")       # ['adaptsegnet_multi_frozen_bn', ..., 'globallocal_all_pixels']
    results.published("advent")                    # (43.8, 'ADVENT paper, AdvEnt')
    print(results.results_table("quick", results.catalogue_names(chapter="advent")))
"""

from ..config import RunConfig
from ..record import Record, data_identity
from .catalogue import CATALOGUE, MATRIX_KNOBS, MATRIX_METHODS, ResultEntry, Source, catalogue_names, published
from .findings import findings
from .stats import gap_recovered, paired_gain, summary
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
