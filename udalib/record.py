"""A run's record: the one schema of ``results/<preset>/<method>.json``, and what a run was measured on.

The trainer writes a record into its ``metrics.json`` (``udalib.train.Trainer.metrics``), ``udalib reproduce``
builds the records of evaluated results, and the results store reads and writes them; all three go through
:class:`Record`, so its fields are the format. mIoU is in percent. Example::

    rec = Record.from_dict(json.loads(Path("results/quick/advent.json").read_text())[0])
    rec.miou, rec.seed, rec.data["synthcity"]["version"]
    rec.to_dict()  # the stored dict again, key for key

A record replaces the one of the same method, seed and iteration count only when both carry the same "data"
identity (:func:`data_identity`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig
from .data import synthcity


@dataclass
class Record:
    """One measured run of one result name.

    method: the result name (a registered method, an ablation or an evaluated result); preset, seed, iters: the run;
    miou: the protocol's main mIoU (percent), miou_by_classes: every mIoU the protocol reports, per_class_iou:
    {class: IoU}, classes: their number; checkpoint: which model was scored ("last": never selected on target);
    wall_s: seconds of the run's own training or evaluation; device, threads: where (CPU kernels' last digits
    depend on the threads); git: the revision; data: :func:`data_identity`. Optional parts, absent from the stored
    dict when None: best_on_target_val (the oracle-selected step, for reference), pixel_accuracy, ablation (the
    trained result it varies and its overrides), members (an ensemble's), adabn and oracle (the two other models of
    a shift's anatomy, each {"miou", ...}), adabn_images (how many target images re-estimated the statistics).
    """

    method: str
    preset: str
    seed: int
    iters: int
    miou: float
    per_class_iou: dict[str, float] | None = None
    classes: int | None = None
    miou_by_classes: dict[str, float] | None = None
    checkpoint: str | None = None
    wall_s: float | None = None
    device: str | None = None
    threads: int | None = None
    git: str | None = None
    data: dict | None = None
    best_on_target_val: dict | None = None
    pixel_accuracy: float | None = None
    ablation: dict | None = None
    members: list[str] | None = None
    adabn: dict | None = None
    oracle: dict | None = None
    adabn_images: int | None = None

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def required(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "record") -> Record:
        """The record of a stored dict; a missing required field or an unknown one is a ValueError naming `where`."""
        missing = [k for k in cls.required() if k not in d]
        unknown = sorted(set(d) - set(cls.fields()))
        if missing or unknown:
            raise ValueError(f"{where}: not a results record (missing {missing}, unknown fields {unknown})")
        return cls(**d)

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any], cfg: RunConfig | None = None) -> Record:
        """The record of a run's ``metrics.json`` (which also holds the trainer's evaluations over time and memory,
        left out here); `cfg` fills in "data" where the metrics lack it (runs trained before records carried it)."""
        rec = cls.from_dict({k: v for k, v in metrics.items() if k in cls.fields()}, "metrics")
        if rec.data is None and cfg is not None:
            rec.data = data_identity(cfg)
        return rec

    def to_dict(self) -> dict[str, Any]:
        """The stored dict: every field, the optional ones only where set."""
        required = set(self.required())
        return {k: v for k, v in dataclasses.asdict(self).items() if k in required or v is not None}


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
