"""The record store: ``results/<preset>/<name>.json``, one list of :class:`~udalib.record.Record` dicts per result
name, appended under a lock and written atomically.

A record replaces the one of the same method, seed and iteration count only when both were measured on the same
data (:func:`udalib.record.data_identity`), or when asked to (``replace=True``, the command line's ``--replace``);
the replaced one is kept in ``<preset>/replaced/``. Chapters read these files; nothing is retyped. Example::

    from udalib.results import store
    store.append_record(record)            # results/quick/advent.json
    store.load("quick")["advent"][0]["miou"]
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from ..files import write_json
from ..record import Record


class RecordConflictError(ValueError):
    """A record would replace one measured on other (or unknown) data; ``replace=True`` replaces it anyway."""


def default_root() -> Path:
    """The repository's ``results/`` folder (the book reads it from any working directory)."""
    return Path(__file__).resolve().parents[2] / "results"


def _describe(record: dict) -> str:
    data = record.get("data")
    if data is None:
        return "unknown data (the record has no 'data' field: it predates data identities)"
    return json.dumps(data, sort_keys=True)


def _file(record: dict, root: str | Path | None) -> Path:
    return Path(root or default_root()) / record["preset"] / f"{record['method']}.json"


def _read(path: Path) -> list[dict]:
    """The records of one file, each read through :class:`Record` (a malformed one names the file)."""
    if not path.exists():
        return []
    return [Record.from_dict(r, f"{path} record {i}").to_dict() for i, r in enumerate(json.loads(path.read_text()))]


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
    return next((c for r in _read(path) if _same_run(r, record) and (c := _conflict(path, r, record))), None)


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


def append_record(record: Record | dict, root: str | Path | None = None, *, replace: bool = False) -> Path:
    """Add `record` to its method's file, written atomically (concurrent appends are serialised).

    A record of the same seed and iteration count is replaced (a re-run of the same measurement, reported) when
    both carry the same "data" identity. One measured on other data, or on unknown data (a record without "data"),
    raises RecordConflictError naming both, unless `replace`: then the replacement is reported with both identities
    and the old record is kept in ``<preset>/replaced/<method>.json`` (never lost; the chapters read only
    ``<preset>/*.json``).
    """
    record = (record if isinstance(record, Record) else Record.from_dict(record)).to_dict()
    path = _file(record, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        records = _read(path)
        for old in [r for r in records if _same_run(r, record)]:
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
                write_json(archive, _read(archive) + [old])
                print(f"  the earlier record is kept in {archive}")
        records = [r for r in records if not _same_run(r, record)] + [record]
        write_json(path, sorted(records, key=lambda r: (r["iters"], r["seed"])))
    return path


def load(preset: str, root: str | Path | None = None) -> dict[str, list[dict]]:
    """{method: [records]} for a preset (empty when nothing was measured yet)."""
    folder = Path(root or default_root()) / preset
    return {p.stem: _read(p) for p in sorted(folder.glob("*.json"))}
