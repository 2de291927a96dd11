"""Writing files so that a crash never leaves half a file under the real name."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside `path`, then rename it to `path` (atomic on POSIX).

    The temporary name is unique per process and call, so two writers never share one; it is removed if `write`
    fails. Returns `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def move_aside(path: str | os.PathLike) -> Path | None:
    """Rename a non-empty file or folder to ``<name>.previous-<time>`` (never delete what a user made); returns
    the new path, or None when there was nothing to keep."""
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = path.with_name(f"{path.name}.previous-{stamp}"), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.previous-{stamp}-{n}")
    path.rename(aside)
    return aside


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write `payload` as indented JSON, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=2, default=float)))
