"""Shared fixtures: a tiny SynthCity pair in a private cache, so runs never touch the user's cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parent.parent / "results"


def _digests() -> dict[str, str]:
    return {str(p.relative_to(RESULTS)): hashlib.sha256(p.read_bytes()).hexdigest() for p in RESULTS.rglob("*.json")}


@pytest.fixture(scope="session", autouse=True)
def results_untouched():
    """The committed records are measured runs: a test that writes a tiny run's record into results/ (a store
    whose root a test forgot to redirect) fails the session instead of silently replacing one."""
    before = _digests()
    yield
    after = _digests()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        pytest.fail(f"tests changed the committed records in results/: {changed}", pytrace=False)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A private $UDABOOK_CACHE for the session (SynthCity sets and cached stages land here)."""
    root = tmp_path_factory.mktemp("udabook-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("UDABOOK_CACHE", str(root))
    yield root
    mp.undo()
