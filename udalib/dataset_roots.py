"""Where the real datasets live on this machine, configured once for every command and chapter.

Either environment variables::

    export UDABOOK_GTA5=/data/gta5 UDABOOK_SYNTHIA=/data/synthia UDABOOK_CITYSCAPES=/data/cityscapes

or a small JSON file, ``~/.config/udabook/datasets.json`` (``UDABOOK_DATASETS`` names another one)::

    {"gta5": "/data/gta5", "synthia": "/data/synthia", "cityscapes": "/data/cityscapes"}

An environment variable wins over the file. With GTA5 (or SYNTHIA) and Cityscapes configured, a CUDA machine runs
the ``paper`` preset by default (``udalib.presets.choose_preset``); without them it runs the ``quick`` one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DATASETS = ("gta5", "synthia", "cityscapes")
ENV = {name: f"UDABOOK_{name.upper()}" for name in DATASETS}


def config_file() -> Path:
    """The datasets file read by :func:`configured_roots` (it need not exist)."""
    explicit = os.environ.get("UDABOOK_DATASETS")
    if explicit:
        return Path(explicit).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "udabook" / "datasets.json"


def configured_roots() -> dict[str, str]:
    """{dataset: root} of every configured dataset (environment first, then the file); a malformed file is an
    error naming it, a missing one configures nothing."""
    path = config_file()
    from_file: dict[str, str] = {}
    if path.is_file():
        try:
            from_file = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f'{path} is not valid JSON ({e}); expected {{"gta5": "/path", ...}}') from None
        if not isinstance(from_file, dict) or set(from_file) - set(DATASETS):
            raise ValueError(f"{path}: expected an object with keys among {DATASETS}, got {from_file!r}")
    roots = {name: str(Path(root).expanduser()) for name, root in from_file.items() if root}
    roots.update({name: os.environ[var] for name, var in ENV.items() if os.environ.get(var)})
    return roots


def where_configured(name: str) -> str:
    """How `name` was configured, for messages: its variable or the file."""
    return ENV[name] if os.environ.get(ENV[name]) else str(config_file())
