"""`udalib reproduce` on tiny runs: records written, finished runs reused, the AdaBN control evaluated."""

import dataclasses
from pathlib import Path

import pytest
import torch

from tests.tiny_runs import tiny_config
from udalib import reproduce as rep
from udalib import results, stages
from udalib.data import synthcity
from udalib.results import CATALOGUE, ResultEntry, load

ADABN = "source_only_adabn"


@pytest.fixture
def tiny_measured(tiny_cache, tmp_path, monkeypatch):
    def tiny_measured_config(name, preset, seed, **kw):
        entry = CATALOGUE[name]
        base = entry.of if entry.kind == "ablation" else name
        return tiny_config(
            base,
            tmp_path / f"seed{seed}" / ("" if base == name else name),
            seed=seed,
            **entry.overrides.get("train", {}),
        )

    monkeypatch.setattr(rep, "measured_config", tiny_measured_config)
    return tmp_path


def test_records_reuse_and_adabn(tiny_measured, tmp_path):
    results_root = tmp_path / "results"
    first = rep.reproduce("quick", ["source_only", ADABN], [0], results_root=str(results_root))
    so, adabn = first
    assert so["method"] == "source_only" and adabn["method"] == ADABN
    assert adabn["adabn_images"] == 16  # every target-train image of the tiny set, once
    assert adabn["miou"] != so["miou"]  # the same weights with target BN statistics
    assert so["data"]["synthcity"]["n_source"] == 48 and adabn["data"] == so["data"]  # what they were measured on

    ckpt = tiny_measured / "seed0" / "source_only" / "checkpoint_0000004.pt"
    stamp = ckpt.stat().st_mtime_ns
    again = rep.reproduce("quick", ["source_only", ADABN], [0], results_root=str(results_root))
    assert ckpt.stat().st_mtime_ns == stamp  # read back, not retrained; AdaBN never writes the checkpoint
    assert again[0]["miou"] == so["miou"] and again[1]["miou"] == pytest.approx(adabn["miou"])
    stored = load("quick", results_root)
    assert {m: len(r) for m, r in stored.items()} == {"source_only": 1, ADABN: 1}


def test_a_different_config_in_the_run_folder_is_refused(tiny_measured, tmp_path):
    rep.run_once(tiny_config("source_only", tiny_measured / "seed0", seed=0))
    other = tiny_config("source_only", tiny_measured / "seed0", seed=5)
    with pytest.raises(FileExistsError, match="holds a run of another config"):
        rep.run_once(other)


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match=r"unknown result name\(s\) \['adaptsegnet'\]"):
        rep.reproduce("quick", ["adaptsegnet"], [0])


def test_a_finished_staged_run_is_reused(tiny_measured, monkeypatch):
    base = tiny_config("source_only", tiny_measured / "stage")
    rep.run_once(base)
    monkeypatch.setattr(stages, "stage_checkpoint", lambda cfg, method, **_: base.final_checkpoint)
    cfg = tiny_config("adaptsegnet_multi", tiny_measured / "adapt")
    assert cfg.train.init_checkpoint == "stage:source_only"
    first = rep.run_once(cfg)
    stamp = cfg.final_checkpoint.stat().st_mtime_ns
    assert rep.run_once(cfg) == first  # its stored config names the resolved stage: still the same run
    assert cfg.final_checkpoint.stat().st_mtime_ns == stamp


def test_an_ablation_is_recorded_under_its_own_name(tiny_measured, tmp_path, monkeypatch):
    entry = ResultEntry(
        "source_only_frozen_bn",
        "ablation",
        "source_only",
        "test",
        of="source_only",
        overrides={"train": {"bn_mode": "frozen"}},
    )
    monkeypatch.setitem(CATALOGUE, entry.name, entry)
    (rec,) = rep.reproduce("quick", ["source_only_frozen_bn"], [0], results_root=str(tmp_path / "results"))
    assert rec["method"] == "source_only_frozen_bn"
    assert rec["ablation"] == {"of": "source_only", "train": {"bn_mode": "frozen"}}
    assert set(load("quick", tmp_path / "results")) == {"source_only_frozen_bn"}


def test_ablations_change_only_what_they_name(tiny_cache):
    ablations = [e for e in CATALOGUE.values() if e.kind == "ablation"]
    assert {e.name for e in ablations} >= {"advent_frozen_bn", "globallocal_all_pixels"}
    for e in ablations:
        ablated, plain = rep.measured_config(e.name, "quick", 1), rep.measured_config(e.of, "quick", 1)
        assert ablated.method == e.of
        if "data" in e.overrides:  # another SynthCity pair: its own generated folder
            assert ablated.data.synthcity_shift == e.overrides["data"]["synthcity_shift"]
            roots = dict(source_root=plain.data.source_root, target_root=plain.data.target_root)
            assert dataclasses.replace(ablated.data, synthcity_shift=plain.data.synthcity_shift, **roots) == plain.data
        else:
            assert ablated.data == plain.data
        assert Path(ablated.out_dir).name.startswith(f"{e.name}-") and ablated.out_dir != plain.out_dir
        assert ablated.train == dataclasses.replace(plain.train, **e.overrides.get("train", {}))
        assert ablated.method_cfg == dataclasses.replace(plain.method_cfg, **e.overrides.get("method", {}))
    assert CATALOGUE["globallocal_all_pixels"].overrides == {"method": {"local_pixels": None}}


def test_a_shift_record_holds_source_only_adabn_and_the_pairs_oracle(tiny_measured, tmp_path, monkeypatch):
    def tiny_overridden_config(name, method, preset, seed, **kw):
        cfg = tiny_config(method, tmp_path / f"seed{seed}" / name, seed=seed)  # in <name>/<method>
        data = dataclasses.replace(cfg.data, **CATALOGUE[name].overrides["data"])
        root = str(synthcity.cache_dir(data))
        return dataclasses.replace(cfg, data=dataclasses.replace(data, source_root=root, target_root=root))

    monkeypatch.setattr(rep, "overridden_config", tiny_overridden_config)
    results_root = tmp_path / "results"
    (rec,) = rep.reproduce("quick", ["shift_geometry"], [0], results_root=str(results_root))
    assert rec["method"] == "shift_geometry"
    assert rec["data"]["synthcity"]["shift"] == dict(appearance=0.0, texture=0.0, geometry=1.0, priors=0.0, layout=0.0)
    # the source-only model is the default pair's stage (the source images do not depend on the shift)
    assert (tiny_measured / "seed0" / "source_only" / "checkpoint_0000004.pt").exists()
    assert not (tmp_path / "seed0" / "shift_geometry" / "source_only").exists()
    assert (tmp_path / "seed0" / "shift_geometry" / "oracle" / "checkpoint_0000004.pt").exists()
    for part in ("adabn", "oracle"):
        assert set(rec[part]) == {"miou", "per_class_iou"} and rec[part]["miou"] != rec["miou"]
    (row,) = results.shift_anatomy("quick", results_root)
    so, ad, orc = rec["miou"], rec["adabn"]["miou"], rec["oracle"]["miou"]
    assert row["pair"] == "geometry alone" and row["seeds"] == 1
    assert row["gap"] == pytest.approx(orc - so)
    expected = (ad - so) / (orc - so) if orc - so >= results.MIN_GAP else None  # no share of a gap of almost nothing
    assert row["recovered"] == (None if expected is None else pytest.approx(expected))
    assert "geometry alone" in results.anatomy_table([row])


def test_a_method_on_one_knobs_pair_starts_from_the_default_pairs_source_stage():
    for name, stage in (("advent_on_texture", "source_only"), ("sdca_on_geometry", "sdca_source")):
        on_knob = rep.measured_config(name, "quick", 0)
        default = rep.measured_config(CATALOGUE[name].of, "quick", 0)
        assert on_knob.data.synthcity_shift != default.data.synthcity_shift
        assert on_knob.out_dir != default.out_dir
        assert stages.stage_config(on_knob, stage).out_dir == stages.stage_config(default, stage).out_dir
    # a stage that learns from the target (its labels, or its batches) belongs to its own pair
    on_knob = rep.measured_config("advent_on_texture", "quick", 0)
    for stage in ("oracle", "minent"):
        assert stages.stage_config(on_knob, stage).data.synthcity_shift == on_knob.data.synthcity_shift
    assert results.MATRIX_KNOBS == ("appearance", "texture", "geometry", "layout")
    for m in results.MATRIX_METHODS:
        assert CATALOGUE[f"{m}_on_layout"].overrides == {"data": {"synthcity_shift": (0.0, 0.0, 0.0, 0.0, 1.0)}}


def test_adabn_reads_target_images_not_the_pseudo_labels_a_method_trained_on(tiny_cache, tmp_path):
    """BAFFT's step 2 names its pseudo-labels as an unresolved ``stage:`` folder; AdaBN after it needs images only."""
    from udalib.models.trained import build_segmenter

    cfg = tiny_config("bafft", tmp_path)
    assert cfg.data.pseudo_label_dir == "stage:bafft_step1"
    model = build_segmenter(dataclasses.replace(cfg.train, pretrained=None), 19)
    assert rep._adabn(cfg, model, torch.device("cpu")) == 16  # every target-train image of the tiny set, once
