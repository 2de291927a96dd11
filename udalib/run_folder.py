"""A run's folder: which checkpoint a run resumes from, whether it may, and that one run at a time writes there.

Nothing a user made is deleted: starting over (``overwrite``) moves the previous run aside, a second process that
wants the folder is refused while the first holds its lock, and resuming checks that the checkpoint belongs to
the same run (method, data, model, schedule) before any work starts.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import PATH_FIELDS, STAGE_PREFIX, DataConfig, RunConfig, TrainConfig, cache_root, field_defaults
from .files import move_aside
from .user_error import UserError

LOCK_FILE = ".lock"
#: The name :func:`udalib.files.move_aside` gives what it keeps: ``<name>.previous-<YYYYmmdd-HHMMSS>[-<n>]``.
KEPT_ASIDE = re.compile(r".+\.previous-\d{8}-\d{6}(-\d+)?")

#: Settings a resumed run may change: where and how often it reports, how long it trains, where it runs.
RESUMABLE_CHANGES = frozenset(
    {
        "resume",
        "overwrite",
        "out_dir",
        "train.iters",
        "train.eval_every",
        "train.checkpoint_every",
        "train.log_every",
        "train.device",
        "data.num_workers",
    }
)


class RunFolderError(UserError, RuntimeError):
    """The run folder cannot be used as asked (nothing to resume, another run's checkpoint, locked)."""


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def config_differences(stored: dict, cfg: RunConfig) -> dict[str, tuple[object, object]]:
    """{field: (stored, now)} for every field that differs and that a resume may not change. A ``stage:`` reference
    not resolved yet is not compared (the trainer compares the resolved one), nor, for a run in the cache, the
    paths it reads: its folder's name is the key of their content (:meth:`RunConfig.identity`), and the cache may
    have been copied to another place since the run was stored."""
    before, now = _flat(stored), _flat(json.loads(cfg.describe()))
    in_cache = Path(cfg.out_dir).resolve().is_relative_to(cache_root().resolve())
    moved = {f"{part}.{name}" for part, names in PATH_FIELDS.items() for name in names} if in_cache else set()
    # a field added to the configs after the run was stored is the same run when it holds its default
    defaults = _flat(json.loads(json.dumps({"data": field_defaults(DataConfig), "train": field_defaults(TrainConfig)})))
    diff = {}
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if key in moved or (key not in before and key in defaults and b == defaults[key]):
            continue
        if a != b and key not in RESUMABLE_CHANGES and not (isinstance(b, str) and b.startswith(STAGE_PREFIX)):
            diff[key] = (a, b)
    return diff


def folder_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The checkpoints a run wrote into `folder`, oldest first (their names carry the zero-padded iteration)."""
    return sorted(Path(folder).glob("checkpoint_*.pt"))


class RunFolder:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.path = Path(cfg.out_dir)

    def checkpoints(self) -> list[Path]:
        """The run's checkpoints, oldest first."""
        return folder_checkpoints(self.path)

    def resume_candidates(self) -> list[Path]:
        """Checkpoints to resume from, best first (``resume="auto"``: newest first, so that a corrupt latest
        one falls back to the one before); empty for a fresh start. Raises where the request cannot be met."""
        r, found = self.cfg.resume, self.checkpoints()
        if r is None:
            if found and not self.cfg.overwrite:
                raise FileExistsError(
                    f"{self.path} already holds checkpoints of a run: continue it with --resume auto "
                    "(resume='auto'), start over with --overwrite (overwrite=True; the old run is moved aside, "
                    "not deleted), or choose another --out-dir (out_dir)"
                )
            return []
        if r == "auto":
            if not found:
                raise RunFolderError(
                    f"nothing to resume in {self.path}: it holds no checkpoint yet; start the run without "
                    "--resume (resume=None)"
                )
            return found[::-1]
        if not Path(r).is_file():
            raise FileNotFoundError(f"resume={r!r}: no such checkpoint file (or pass --resume auto)")
        return [Path(r)]

    def check_before_start(self) -> None:
        """The cheap checks, before any stage is trained or data is touched: the resume request can be met, and a
        resumed run's folder describes the same run (its ``config.json``)."""
        candidates = self.resume_candidates()
        config = self.path / "config.json"
        if candidates and config.is_file():
            self.check_same_run(config.read_text(), config)

    def continuing(self) -> RunConfig:
        """The config that continues this folder's run where one was started (a cached stage killed half-way),
        and starts it otherwise."""
        return dataclasses.replace(self.cfg, resume="auto" if self.checkpoints() else None)

    def check_same_run(self, stored_config: str, checkpoint: Path) -> None:
        """Refuse to continue `checkpoint` (its stored config JSON) as a run of another config."""
        diff = config_differences(json.loads(stored_config), self.cfg)
        if diff:
            lines = "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in diff.items())
            raise RunFolderError(
                f"{checkpoint} belongs to another run ({lines}); resume it with the same "
                "settings, or start a new run in another --out-dir"
            )

    def move_aside(self) -> Path | None:
        """Move a previous run to ``<name>.previous-<time>`` (never deleted); the new run starts afresh."""
        return move_aside(self.path)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``<folder>/.lock`` (this process's PID) while the run writes there; a live holder is named in the
        refusal, a stale lock (its process has ended) is taken over."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK_FILE
        mine = self.path / f"{LOCK_FILE}.{os.getpid()}"
        mine.write_text(str(os.getpid()))
        try:
            while True:
                try:
                    os.link(mine, lock)  # atomic, and the lock holds a PID from its first instant
                    break
                except FileExistsError:
                    holder = _read_pid(lock)
                    if holder is not None and _alive(holder):
                        raise RunFolderError(
                            f"{self.path} is in use by another run (process {holder}, lock file {lock}); wait "
                            "for it to finish or choose another --out-dir"
                        ) from None
                    lock.unlink(missing_ok=True)  # stale: its process ended without releasing it
        finally:
            mine.unlink(missing_ok=True)
        try:
            yield
        finally:
            if _read_pid(lock) == os.getpid():
                lock.unlink(missing_ok=True)


def kept_aside(root: str | os.PathLike) -> list[tuple[Path, int]]:
    """The old runs moved aside under `root` (starting over with ``overwrite``, re-running a chapter), each with its
    size in bytes, in name order (a run's copies oldest first); what lies inside one of them is not listed again.

    Example: after two re-runs of a chapter, ``kept_aside("runs")`` lists ``runs/quick/advent.previous-20260101-
    120000`` and ``runs/quick/advent.previous-20260101-130000`` with their sizes."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            if KEPT_ASIDE.fullmatch(name):
                path = Path(folder) / name
                found.append((path, _size(path)))
        dirs[:] = sorted(d for d in dirs if not KEPT_ASIDE.fullmatch(d))
    return sorted(found)


def _size(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    return sum((Path(folder) / f).stat().st_size for folder, _, files in os.walk(path) for f in files)


def _read_pid(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM  # exists, owned by someone else
    return True
