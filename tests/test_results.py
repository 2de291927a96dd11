"""Results files: records, summaries, paired gains, the gap recovered, and the repository's own measurements."""

import json
import math

import pytest

from udalib import results, viz

CLASSES = ["road", "car"]


def record(method: str, seed: int, miou: float, iters: int = 200) -> dict:
    return {"method": method, "preset": "quick", "seed": seed, "iters": iters, "miou": miou,
            "per_class_iou": {"road": miou + 10, "car": miou - 10}, "classes": 19, "checkpoint": "last",
            "wall_s": 60.0, "device": "cpu"}


@pytest.fixture
def root(tmp_path):
    for seed, (so, ad, orc) in enumerate([(20.0, 26.0, 40.0), (19.0, 27.0, 39.0), (21.0, 25.0, 41.0)]):
        results.append_record(record("source_only", seed, so), tmp_path)
        results.append_record(record("adaptsegnet_multi", seed, ad), tmp_path)
        results.append_record(record("oracle", seed, orc), tmp_path)
    results.append_record(record("minent", 0, 20.5), tmp_path)
    return tmp_path


def test_append_replaces_the_same_seed_and_length(tmp_path, capsys):
    results.append_record(record("advent", 0, 20.0), tmp_path)
    results.append_record(record("advent", 0, 22.0, iters=400), tmp_path)
    results.append_record(record("advent", 0, 21.0), tmp_path)
    assert "replacing the earlier record of seed 0 (20.00 mIoU)" in capsys.readouterr().out
    recs = json.loads((tmp_path / "quick" / "advent.json").read_text())
    assert [(r["iters"], r["miou"]) for r in recs] == [(200, 21.0), (400, 22.0)]


def test_summary_mean_and_sample_std(root):
    rows = {r["method"]: r for r in results.summary("quick", root=root)}
    assert rows["source_only"]["miou_mean"] == pytest.approx(20.0)
    assert rows["source_only"]["miou_std"] == pytest.approx(1.0)  # sample std of 19, 20, 21
    assert rows["minent"]["seeds"] == 1 and math.isnan(rows["minent"]["miou_std"])


def test_paired_gain_pairs_seeds(root):
    g = results.paired_gain("quick", "adaptsegnet_multi", root=root)
    assert g["per_seed"] == {0: 6.0, 1: 8.0, 2: 4.0}
    assert g["mean"] == pytest.approx(6.0) and g["std"] == pytest.approx(2.0)
    assert g["spread"] == pytest.approx(1.0)  # both runs' seed-to-seed std is 1
    one = results.paired_gain("quick", "minent", root=root)
    assert one["seeds"] == 1 and one["per_seed"] == {0: 0.5} and one["spread"] == pytest.approx(1.0)
    assert results.paired_gain("quick", "advent", root=root) is None


def test_gap_recovered():
    assert results.gap_recovered(36.6, 36.6, 65.1) == 0.0
    assert results.gap_recovered(65.1, 36.6, 65.1) == 1.0
    assert results.gap_recovered(42.4, 36.6, 65.1) == pytest.approx(5.8 / 28.5)


def test_results_table_states_gain_gap_and_what_is_missing(root):
    table = viz.results_table("quick", ["source_only", "adaptsegnet_multi", "minent", "advent", "oracle"], root)
    line = {row.split()[0]: row for row in table.splitlines() if row.strip()}
    assert "26.0 ± 1.0" in line["adaptsegnet_multi"] and "+6.0 ± 2.0*" in line["adaptsegnet_multi"]
    assert "30%" in line["adaptsegnet_multi"]  # (26 - 20) / (40 - 20)
    assert "20%" in line["adaptsegnet_multi"]  # published: (42.4 - 36.6) / (65.1 - 36.6)
    assert "+0.5 " in line["minent"] and "+0.5*" not in line["minent"]  # one seed: never starred
    assert "not measured" in line["advent"]
    assert table.rstrip().endswith("--methods advent`")


def test_repository_records_are_consistent():
    """Every stored record has the format's fields, and its mIoU is the mean of its per-class IoUs."""
    data = results.load("quick")
    assert {"source_only", "oracle"} <= set(data)
    for method, recs in data.items():
        seeds = [(r["seed"], r["iters"]) for r in recs]
        assert len(seeds) == len(set(seeds)), f"{method}: duplicate seeds"
        for r in recs:
            assert r["method"] == method and r["preset"] == "quick" and r["checkpoint"] == "last"
            assert {"seed", "iters", "miou", "per_class_iou", "wall_s", "device"} <= set(r)
            ious = list(r["per_class_iou"].values())
            assert len(ious) == r["classes"] == 19
            assert r["miou"] == pytest.approx(sum(ious) / len(ious), abs=1e-3)


def test_gain_table_verdicts(root):
    table = viz.gain_table("quick", [("adaptsegnet_multi", "source_only"), ("minent", "source_only"),
                                     ("advent", "source_only")], root)
    line = {row.split()[0]: row for row in table.splitlines()[2:]}
    assert "+6.0 ± 2.0" in line["adaptsegnet_multi"] and "(clears it)" in line["adaptsegnet_multi"]
    assert "0: +6.0  1: +8.0  2: +4.0" in line["adaptsegnet_multi"]
    assert "(one seed)" in line["minent"] and "not measured" in line["advent"]
    results.append_record(record("advent", 0, 20.5), root)
    results.append_record(record("advent", 1, 19.0), root)
    table = viz.gain_table("quick", [("advent", "source_only")], root)
    assert "(within it)" in table  # +0.25 on average, under the spread of 1
