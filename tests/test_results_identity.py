"""Results records carry the identity of their data: a record replaces another only when both were measured on the
same data, or when asked to; the check happens before anything is trained."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from tests.tiny_runs import tiny_config
from udalib import reproduce as rep
from udalib import results
from udalib.config import SHIFT_KNOBS
from udalib.data import synthcity
from udalib.data.synthcity import SynthCitySpec, generate
from udalib.presets import resolve
from udalib.results import RecordConflictError, append_record, data_identity, record_from_metrics

SPEC = SynthCitySpec(height=16, width=32, n_source=4, n_target_train=2, n_target_val=2)


def record(seed: int, miou: float, data: dict | None, iters: int = 200) -> dict:
    rec = {"method": "advent", "preset": "quick", "seed": seed, "iters": iters, "miou": miou, "device": "cpu"}
    return rec if data is None else {**rec, "data": data}


def sc_config(root) -> object:
    return resolve("source_only", "quick", data_root=str(root))


def test_synthcity_identity_is_the_generator_version_and_the_stored_spec(tmp_path, tiny_cache):
    root = generate(tmp_path / "set", SPEC, workers=1)
    ident = data_identity(sc_config(root))
    assert ident == {
        "preset": "quick",
        "protocol": "cityscapes19",
        "source": "synthcity",
        "target": "synthcity",
        "synthcity": {"version": synthcity.VERSION, **dataclasses.asdict(SPEC)},  # as synthcity.json stores it
    }
    meta = root / synthcity.META_FILE
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "version": 7}))
    assert data_identity(sc_config(root))["synthcity"]["version"] == 7
    meta.write_text(json.dumps(dataclasses.asdict(SPEC)))  # a set written before the version was recorded
    assert data_identity(sc_config(root))["synthcity"]["version"] == "unknown"
    # the shared cache: its folder is keyed by the version; before generation, the spec it will be made with
    cached = resolve("source_only", "quick")
    assert data_identity(cached)["synthcity"] == {
        "version": synthcity.VERSION,
        "seed": 0,
        "height": 128,
        "width": 256,
        "n_source": 2000,
        "n_target_train": 500,
        "n_target_val": 200,
        "shift": {knob: 1.0 for knob in SHIFT_KNOBS},
    }
    assert data_identity(resolve("source_only", "quick", data_root=str(tmp_path / "none")))["synthcity"] == {
        "version": "unknown",
        "root": str(tmp_path / "none"),
        "spec": "missing",
    }


def test_real_data_identity_names_the_datasets_and_the_resolved_roots(tmp_path, monkeypatch):
    (tmp_path / "data" / "GTA5").mkdir(parents=True)
    (tmp_path / "cs").symlink_to(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    cfg = resolve("source_only", "quick")
    data = dataclasses.replace(
        cfg.data, source="gta5", target="cityscapes", source_root="cs/GTA5", target_root="data/../data"
    )
    ident = data_identity(dataclasses.replace(cfg, data=data))
    assert ident == {
        "preset": "quick",
        "protocol": "cityscapes19",
        "source": "gta5",
        "target": "cityscapes",
        "source_root": str(tmp_path / "data" / "GTA5"),
        "target_root": str(tmp_path / "data"),
    }


def test_a_record_of_the_same_data_replaces_one_of_other_data_is_refused(tmp_path, capsys):
    a, b = {"preset": "quick", "synthcity": {"version": 2}}, {"preset": "quick", "synthcity": {"version": 3}}
    append_record(record(0, 20.0, a), tmp_path)
    append_record(record(0, 21.0, a), tmp_path)
    assert "replacing the earlier record of seed 0 (20.00 mIoU)" in capsys.readouterr().out
    with pytest.raises(RecordConflictError) as err:
        append_record(record(0, 30.0, b), tmp_path)
    message = str(err.value)
    assert "already holds the record of advent seed 0 at 200 iterations (21.00 mIoU)" in message
    assert 'measured on {"preset": "quick", "synthcity": {"version": 2}}' in message
    assert 'the new one is measured on {"preset": "quick", "synthcity": {"version": 3}}' in message
    assert "replace=True" in message
    stored = json.loads((tmp_path / "quick" / "advent.json").read_text())
    assert [r["miou"] for r in stored] == [21.0]  # untouched
    append_record(record(0, 30.0, b), tmp_path, replace=True)
    out = capsys.readouterr().out
    assert "replacing the earlier record of seed 0 (21.00 mIoU)" in out and '"version": 2' in out
    assert [r["miou"] for r in json.loads((tmp_path / "quick" / "advent.json").read_text())] == [30.0]
    kept = json.loads((tmp_path / "quick" / "replaced" / "advent.json").read_text())  # moved, not deleted
    assert [(r["miou"], r["data"]) for r in kept] == [(21.0, a)]
    assert set(results.load("quick", tmp_path)) == {"advent"}  # the archive is not read as results


def test_a_record_without_data_is_unknown_and_only_replaced_on_request(tmp_path, capsys):
    legacy = tmp_path / "quick" / "advent.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps([record(0, 20.0, None), record(1, 22.0, None)]))  # as results/quick/*.json
    new = record(0, 25.0, {"preset": "quick"})
    assert "unknown data (the record has no 'data' field" in results.replacement_conflict(new, tmp_path)
    with pytest.raises(RecordConflictError, match="measured on unknown data"):
        append_record(new, tmp_path)
    append_record(record(2, 25.0, {"preset": "quick"}), tmp_path)  # another seed: no conflict
    append_record(new, tmp_path, replace=True)
    assert "it was measured on unknown data" in capsys.readouterr().out
    stored = json.loads(legacy.read_text())
    assert [(r["seed"], r["miou"], "data" in r) for r in stored] == [(0, 25.0, True), (1, 22.0, False), (2, 25.0, True)]


def test_record_from_metrics_keeps_or_fills_the_data(tiny_cache):
    cfg = resolve("source_only", "quick")
    metrics = {**record(0, 20.0, None), "evals": [], "data": {"preset": "quick", "x": 1}}
    assert record_from_metrics(metrics)["data"] == {"preset": "quick", "x": 1}
    assert "evals" not in record_from_metrics(metrics)
    del metrics["data"]
    assert record_from_metrics(metrics, cfg)["data"] == data_identity(cfg)


def test_concurrent_appends_lose_nothing(tmp_path):
    def add(seeds):
        for s in seeds:
            append_record(record(s, float(s), {"preset": "quick"}), tmp_path)

    threads = [threading.Thread(target=add, args=(range(k, 40, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = json.loads((tmp_path / "quick" / "advent.json").read_text())
    assert [r["seed"] for r in stored] == list(range(40))
    assert not [p for p in (tmp_path / "quick").iterdir() if p.name != "advent.json"]  # no temporary files left


def test_reproduce_refuses_before_training(tiny_cache, tmp_path, monkeypatch):
    def tiny_measured_config(name, preset, seed, **kw):
        return tiny_config(name, tmp_path / f"seed{seed}", seed=seed)

    def no_training(cfg):
        raise AssertionError("trained before checking the results folder")

    monkeypatch.setattr(rep, "measured_config", tiny_measured_config)
    monkeypatch.setattr(rep, "run_once", no_training)
    root = tmp_path / "results"
    (root / "quick").mkdir(parents=True)
    legacy = [{**record(0, 20.0, None), "method": "source_only", "iters": 4}]
    (root / "quick" / "source_only.json").write_text(json.dumps(legacy))
    with pytest.raises(RecordConflictError) as err:
        rep.reproduce("quick", ["source_only", "source_only_adabn"], [0, 1], results_root=str(root))
    message = str(err.value)
    assert "refusing to replace 1 record(s)" in message and "nothing was trained" in message
    assert "source_only.json already holds the record of source_only seed 0 at 4 iterations" in message
    identity = data_identity(tiny_measured_config("source_only", "quick", 0))
    assert json.dumps(identity, sort_keys=True) in message
