"""Shared fixtures: a tiny SynthCity pair in a private cache, so runs never touch the user's cache."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A private $UDABOOK_CACHE for the session (SynthCity sets and cached stages land here)."""
    root = tmp_path_factory.mktemp("udabook-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("UDABOOK_CACHE", str(root))
    yield root
    mp.undo()
