"""`udalib reproduce` on tiny runs: records written, finished runs reused, the AdaBN control evaluated."""

import pytest

from tests.tiny_runs import tiny_config
from udalib import reproduce as rep
from udalib.results import load


@pytest.fixture
def tiny_measured(tiny_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(rep, "measured_config",
                        lambda method, preset, seed, **kw: tiny_config(method, tmp_path / f"seed{seed}", seed=seed))
    return tmp_path


def test_records_reuse_and_adabn(tiny_measured, tmp_path):
    results_root = tmp_path / "results"
    first = rep.reproduce("quick", ["source_only", rep.ADABN], [0], results_root=str(results_root))
    so, adabn = first
    assert so["method"] == "source_only" and adabn["method"] == rep.ADABN
    assert adabn["adabn_images"] == 16  # every target-train image of the tiny set, once
    assert adabn["miou"] != so["miou"]  # the same weights with target BN statistics

    ckpt = tiny_measured / "seed0" / "source_only" / "checkpoint_0000004.pt"
    stamp = ckpt.stat().st_mtime_ns
    again = rep.reproduce("quick", ["source_only", rep.ADABN], [0], results_root=str(results_root))
    assert ckpt.stat().st_mtime_ns == stamp  # read back, not retrained; AdaBN never writes the checkpoint
    assert again[0]["miou"] == so["miou"] and again[1]["miou"] == pytest.approx(adabn["miou"])
    stored = load("quick", results_root)
    assert {m: len(r) for m, r in stored.items()} == {"source_only": 1, rep.ADABN: 1}


def test_a_different_config_in_the_run_folder_is_refused(tiny_measured, tmp_path):
    rep.run_once(tiny_config("source_only", tiny_measured / "seed0", seed=0))
    other = tiny_config("source_only", tiny_measured / "seed0", seed=5)
    with pytest.raises(FileExistsError, match="holds a run of another config"):
        rep.run_once(other)


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['adaptsegnet'\]"):
        rep.reproduce("quick", ["adaptsegnet"], [0])


def test_a_finished_staged_run_is_reused(tiny_measured, monkeypatch):
    from udalib import pipeline

    base = tiny_config("source_only", tiny_measured / "stage")
    rep.run_once(base)
    monkeypatch.setattr(pipeline, "stage_checkpoint", lambda cfg, method, progress="lines": rep._final_checkpoint(base))
    cfg = tiny_config("adaptsegnet_multi", tiny_measured / "adapt")
    assert cfg.train.init_checkpoint == "stage:source_only"
    first = rep.run_once(cfg)
    stamp = rep._final_checkpoint(cfg).stat().st_mtime_ns
    assert rep.run_once(cfg) == first  # its stored config names the resolved stage: still the same run
    assert rep._final_checkpoint(cfg).stat().st_mtime_ns == stamp
