"""The stage cache is named by content and settings, never by where it lies: copied to another folder (another
checkout, a container, a course machine's image), it is found again and no shared stage is trained twice."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from tests.tiny_runs import shrink_resolve, tiny_config
from udalib import reproduce, stages
from udalib.config import portable_path


def test_a_copied_cache_trains_no_shared_stage(tmp_path, monkeypatch, capsys):
    first, moved = tmp_path / "cache", tmp_path / "elsewhere" / "udabook"
    monkeypatch.setenv("UDABOOK_CACHE", str(first))
    monkeypatch.setattr(stages, "resolve", shrink_resolve(iters=2))  # the shared stages on the tiny set too
    cfg = tiny_config("adaptsegnet_multi", tmp_path / "runs", iters=2)
    assert cfg.train.init_checkpoint == "stage:source_only"
    stages.run(cfg, progress="none")
    out = capsys.readouterr().out
    assert "generating SynthCity" in out and "training stage 'source_only' into the cache" in out
    stage = Path(stages.stage_config(cfg, "source_only").out_dir)

    shutil.copytree(first, moved)
    shutil.rmtree(first)  # nothing may be read from where the cache was
    monkeypatch.setenv("UDABOOK_CACHE", str(moved))
    again = tiny_config("adaptsegnet_multi", tmp_path / "runs-elsewhere", iters=2)
    assert Path(stages.stage_config(again, "source_only").out_dir) == moved / stage.relative_to(first)
    result = stages.run(again, progress="none")
    out = capsys.readouterr().out
    assert "training stage" not in out and "generating SynthCity" not in out
    assert result.final is not None
    # the stage's stored config names the old place: still the same run (`udalib reproduce` reads it as finished)
    assert reproduce.run_once(stages.stage_config(again, "source_only"))["method"] == "source_only"


def test_paths_are_named_relative_to_the_cache_or_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("UDABOOK_CACHE", str(tmp_path / "cache"))
    assert portable_path(str(tmp_path / "cache" / "synthcity-8x16-abc")) == "$UDABOOK_CACHE/synthcity-8x16-abc"
    for kept in (None, "stage:source_only", "imagenet", str(tmp_path / "missing")):
        assert portable_path(kept) == kept
    for folder, content in (("a", b"weights"), ("b", b"weights"), ("c", b"weightz"), ("d", b"weights")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "init.pt").write_bytes(content)
    (tmp_path / "d" / "extra.png").write_bytes(b"")
    name = {folder: portable_path(str(tmp_path / folder / "init.pt")) for folder in "abc"}
    assert name["a"] == name["b"] != name["c"] and name["a"].startswith("content:")  # a file by its bytes
    listing = {folder: portable_path(str(tmp_path / folder)) for folder in "abd"}
    assert listing["a"] == listing["b"] != listing["d"]  # a folder by its files' names and sizes


def test_the_identity_leaves_out_where_the_run_is_written(tiny_cache, tmp_path):
    cfg = tiny_config("source_only", tmp_path)
    elsewhere = dataclasses.replace(cfg, out_dir=str(tmp_path / "other"), resume="auto", overwrite=True)
    assert cfg.identity() == elsewhere.identity()
    assert "out_dir" not in cfg.identity() and cfg.identity()["data"]["source_root"].startswith("$UDABOOK_CACHE/")
