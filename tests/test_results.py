"""Results: the catalogue, records, summaries, paired gains, the gap recovered, the tables, and the repository's own
measurements."""

import json
import math
from pathlib import Path

import pytest

from udalib import methods, results
from udalib.config import SHIFT_KNOBS
from udalib.results import catalogue

CLASSES = ["road", "car"]
DATA = {"preset": "quick", "protocol": "cityscapes19", "source": "synthcity", "target": "synthcity"}


def record(method: str, seed: int, miou: float, iters: int = 200) -> dict:
    return {
        "method": method,
        "preset": "quick",
        "seed": seed,
        "iters": iters,
        "miou": miou,
        "per_class_iou": {"road": miou + 10, "car": miou - 10},
        "classes": 19,
        "checkpoint": "last",
        "wall_s": 60.0,
        "device": "cpu",
        "data": DATA,
    }


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
    # t_{0.975, 2} · 2 / √3 = 4.303 · 1.155
    assert g["interval"].half_width == pytest.approx(4.9683, abs=1e-4) and g["verdict"] == "above 0" and g["clears"]
    one = results.paired_gain("quick", "minent", root=root)
    assert one["seeds"] == 1 and one["per_seed"] == {0: 0.5} and one["verdict"] == "one seed" and not one["clears"]
    assert results.paired_gain("quick", "advent", root=root) is None


def test_gap_recovered():
    assert results.gap_recovered(36.6, 36.6, 65.1) == 0.0
    assert results.gap_recovered(65.1, 36.6, 65.1) == 1.0
    assert results.gap_recovered(42.4, 36.6, 65.1) == pytest.approx(5.8 / 28.5)


def test_results_table_states_gain_gap_and_what_is_missing(root):
    table = results.results_table("quick", ["source_only", "adaptsegnet_multi", "minent", "advent", "oracle"], root)
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


def test_the_record_type_reads_every_stored_record_back_key_for_key():
    from udalib.record import Record

    stored = [r for recs in results.load("quick").values() for r in recs]
    golden = [r for recs in results.load("quick", GOLDEN_RESULTS).values() for r in recs]
    for r in stored + golden:
        assert Record.from_dict(r).to_dict() == r
    with pytest.raises(ValueError, match=r"advent.json record 0: not a results record \(missing \['miou'\], unknown"):
        Record.from_dict(
            {"method": "advent", "preset": "quick", "seed": 0, "iters": 1, "mIoU": 1}, "advent.json record 0"
        )


def test_gain_table_verdicts(root):
    table = results.gain_table(
        "quick", [("adaptsegnet_multi", "source_only"), ("minent", "source_only"), ("advent", "source_only")], root
    )
    line = {row.split()[0]: row for row in table.splitlines()[2:]}
    assert "+6.0    [+1.0, +11.0]" in line["adaptsegnet_multi"] and "(above 0)" in line["adaptsegnet_multi"]
    assert "0: +6.0  1: +8.0  2: +4.0" in line["adaptsegnet_multi"]
    assert "(one seed)" in line["minent"] and "not measured" in line["advent"]
    results.append_record(record("advent", 0, 20.5), root)
    results.append_record(record("advent", 1, 19.0), root)
    table = results.gain_table("quick", [("advent", "source_only")], root)
    assert "(not distinguishable)" in table  # +0.5 and +0.0: the interval spans 0


# ----------------------------------------------------------------------------------------------------------------
# The catalogue


def test_catalogue_names_are_unique():
    assert all(name == entry.name for name, entry in results.CATALOGUE.items())
    entry = results.CATALOGUE["advent"]
    with pytest.raises(ValueError, match=r"listed twice: \['advent'\]"):
        catalogue._catalogue(entry, results.CATALOGUE["minent"], entry)


def test_every_trained_entry_is_a_registered_method_described_as_the_registry_describes_it():
    trained = results.catalogue_names(kind="trained")
    assert trained and set(trained) <= set(methods.REGISTRY)
    for name in trained:
        e = results.CATALOGUE[name]
        assert e.description == methods.get(name).description, name
        assert e.of is None and e.how is None and not e.overrides and not e.members, name


def test_every_ablation_and_evaluated_result_rests_on_trained_results():
    trained = set(results.catalogue_names(kind="trained"))
    for name, e in results.CATALOGUE.items():
        if e.kind == "trained":
            continue
        assert e.of in trained and set(e.members) <= trained, name
        assert (e.kind == "ablation") == (e.how is None), name
        assert bool(e.overrides) == (e.kind == "ablation" or e.how == "shift"), name
        assert set(e.overrides) <= {"train", "method", "data"}, name
    # the run order: what an entry rests on is made before it
    order = results.catalogue_names()
    assert all(order.index(e.of) < order.index(n) for n, e in results.CATALOGUE.items() if e.of), order
    for k in SHIFT_KNOBS:  # each knob alone at strength 1
        shift = results.CATALOGUE[f"shift_{k}"].overrides["data"]["synthcity_shift"]
        assert shift == tuple(float(k == knob) for knob in SHIFT_KNOBS)


def test_every_published_number_has_a_source_and_a_note():
    for name, e in results.CATALOGUE.items():
        if e.published is not None:
            assert e.source is not None and all(e.source), name
            assert e.compared and e.published_note, name
            assert 0 < e.published < 100, name
        else:
            assert e.source is None, name
    assert results.published("my_own_experiment") == (None, "")
    assert results.published("advent") == (results.CATALOGUE["advent"].published, "ADVENT paper, AdvEnt")


def test_every_stored_result_has_a_catalogue_entry():
    stored = {p.stem for p in (results.default_root() / "quick").glob("*.json")}
    assert stored and stored <= set(results.CATALOGUE)


def test_catalogue_names_filter_by_kind_and_chapter():
    by_kind = {k: results.catalogue_names(kind=k) for k in ("trained", "ablation", "evaluated")}
    assert sorted(sum(by_kind.values(), [])) == sorted(results.CATALOGUE)
    assert all(results.CATALOGUE[n].kind == k for k, names in by_kind.items() for n in names)
    assert results.catalogue_names(chapter="advent") == ["minent", "advent", "advent_minent_ensemble"]
    assert set(results.catalogue_names(kind="evaluated", chapter="results")) == {
        n for n, e in results.CATALOGUE.items() if e.how == "adabn"
    }
    with pytest.raises(ValueError, match="no result of kind 'ablations'"):
        results.catalogue_names(kind="ablations")
    with pytest.raises(ValueError, match="no result of chapter 'intro'"):
        results.catalogue_names(chapter="intro")  # the introduction quotes no result


# ----------------------------------------------------------------------------------------------------------------
# The tables on the repository's measurements

GOLDEN = Path(__file__).parent / "golden" / "results_quick_tables.txt"
#: A frozen copy of results/quick/ as it was when the golden tables were written, so new measurements in
#: results/ do not touch this test.
GOLDEN_RESULTS = Path(__file__).parent / "golden" / "results"
#: the result names the golden tables were written with (the catalogue of then, in its order)
V2_ORDER = [
    "source_only",
    "oracle",
    "source_only_adabn",
    "adaptsegnet_single",
    "adaptsegnet_multi",
    "adaptsegnet_ls",
    "minent",
    "advent",
    "advent_minent_ensemble",
    "globallocal",
    "sdca_source",
    "sdca",
    "sdca_ssl",
    "adaptsegnet_multi_frozen_bn",
    "minent_frozen_bn",
    "advent_frozen_bn",
    "globallocal_all_pixels",
    "adaptsegnet_multi_adabn",
    "advent_adabn",
]
#: The tables the chapters printed when the tables moved from ``udalib.viz`` to ``udalib.results``, and the whole
#: catalogue's.
TABLES = [
    ["source_only", "oracle"],
    ["source_only", "source_only_adabn", "adaptsegnet_single", "adaptsegnet_multi", "adaptsegnet_ls", "oracle"],
    ["source_only", "source_only_adabn", "minent", "advent", "advent_minent_ensemble", "oracle"],
    ["source_only", "source_only_adabn", "advent", "globallocal", "globallocal_all_pixels", "oracle"],
    ["source_only", "source_only_adabn", "sdca_source", "sdca", "sdca_ssl", "oracle"],
    [n for n in V2_ORDER[:13] if n != "oracle"] + ["oracle"],  # the comparison table: the compared results
    V2_ORDER + ["not_a_result"],
]
GAINS = [
    [(m, "source_only") for m in V2_ORDER[1:]] + [("not_a_result", "source_only")],
    [
        ("globallocal", "advent"),
        ("sdca", "sdca_source"),
        ("sdca_ssl", "sdca"),
        ("adaptsegnet_multi_adabn", "source_only_adabn"),
        ("advent_adabn", "source_only_adabn"),
    ],
]


def quick_tables() -> str:
    """Every table of :data:`TABLES` and :data:`GAINS` on the frozen records of :data:`GOLDEN_RESULTS`."""
    tables = [results.results_table("quick", t, GOLDEN_RESULTS) for t in TABLES]
    gains = [results.gain_table("quick", g, GOLDEN_RESULTS) for g in GAINS]
    return "\n\n".join(tables + gains) + "\n"


def test_tables_on_the_stored_results_print_what_they_printed_before():
    """The chapters' tables on a frozen copy of the records, as the golden file holds them (written when the tables
    moved from ``udalib.viz``; rewritten once when their verdict became the paired 95 % interval over seeds)."""
    assert quick_tables() == GOLDEN.read_text()


def test_the_readme_quotes_the_quick_schedule_and_its_recorded_time():
    import re

    from udalib.presets import QUICK_TRAIN

    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    m = re.search(r"trains the small DeepLab for ([\d,]+) iterations \(([\d.]+) minutes in the fastest", readme)
    assert m and int(m[1].replace(",", "")) == QUICK_TRAIN.iters
    walls = [r["wall_s"] for r in results.load("quick")["source_only"] if r["iters"] == QUICK_TRAIN.iters]
    assert walls and f"{min(walls) / 60:.1f}" == m[2]


def test_findings_state_what_the_records_say(tmp_path):
    def rec(method, seed, miou):
        return {"method": method, "preset": "quick", "seed": seed, "iters": 200, "miou": miou, "per_class_iou": {}}

    folder = tmp_path / "quick"
    folder.mkdir()
    runs = {
        "source_only": [20.0, 22.0],
        "source_only_adabn": [30.0, 31.0],
        "advent": [26.0, 29.0],  # +6, +7 over source-only; -4, -2 against AdaBN alone
        "advent_frozen_bn": [19.0, 21.0],  # -1, -1: the loss alone does not add
    }
    for method, values in runs.items():
        (folder / f"{method}.json").write_text(json.dumps([rec(method, i, v) for i, v in enumerate(values)]))
    text = results.findings("quick", ["advent", "minent"], root=tmp_path)
    advent, minent = text.splitlines()
    # t_{0.975, 1} = 12.706: +6.5 ± 12.706 · 0.707 / √2 = [+0.1, +12.9]; -3.0 ± 12.706 · 1.414 / √2 spans 0
    assert "gains +6.5 (seeds +6.0, +7.0) mIoU over source-only, 95 % interval [+0.1, +12.9] over 2 seeds" in advent
    assert (
        "it ends 3.0 less than AdaBN alone (the source-only model with target BatchNorm statistics, no training), "
        "not distinguishable (95 % interval [-15.7, +9.7] over 2 seeds spans 0)"
    ) in advent
    assert (
        "changes mIoU by -1.0 (seeds -1.0, -1.0), 95 % interval [-1.0, -1.0] over 2 seeds: the loss alone does not "
        "add to source-only"
    ) in advent
    assert minent == "* **minent**: not measured yet (`udalib reproduce --preset quick --methods minent`)."


def _write(folder: Path, runs: dict[str, list[dict]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for method, recs in runs.items():
        (folder / f"{method}.json").write_text(json.dumps([{"method": method, **r} for r in recs]))


def _rec(seed: int, miou: float, **extra) -> dict:
    return {"preset": "quick", "seed": seed, "iters": 200, "miou": miou, "wall_s": 60.0 * (seed + 1), **extra}


def test_the_comparison_table_pairs_by_seed_against_source_only_and_adabn_alone(tmp_path):
    _write(
        tmp_path / "quick",
        {
            "source_only": [_rec(0, 20.0), _rec(1, 22.0)],
            "oracle": [_rec(0, 60.0), _rec(1, 62.0)],
            "source_only_adabn": [_rec(0, 30.0), _rec(1, 31.0)],
            "advent": [_rec(0, 26.0), _rec(1, 29.0)],  # +6, +7 over source-only; -4, -2 over AdaBN alone
        },
    )
    table = results.comparison_markdown("quick", ["source_only_adabn", "advent", "minent"], tmp_path)
    header, rule, adabn, advent, minent = table.splitlines()
    assert header.count("|") == rule.count("|") == 10
    # the 95 % intervals over the two seeds (t_{0.975, 1} = 12.706): over source-only +6.5 [+0.1, +12.9] excludes 0
    # (bold), over AdaBN alone -3.0 [-15.7, +9.7] spans it
    assert (
        advent == "| `advent` | 27.5 ± 2.1 | 2 | **+6.5 [+0.1, +12.9]** | -3.0 [-15.7, +9.7] | 16% | 43.8 | 25% | 1.5 |"
    )
    assert adabn.startswith("| `source_only_adabn` | 30.5 ± 0.7 | 2 | **+9.5 [+3.1, +15.9]** |  | 24% |")
    assert minent == "| `minent` | not measured | 0 |  |  |  | 42.3 | 20% |  |"


def test_per_class_means_average_over_seeds(tmp_path):
    iou = lambda road, sky: {"per_class_iou": {"road": road, "sky": sky}}  # noqa: E731
    _write(tmp_path / "quick", {"advent": [_rec(0, 1, **iou(80, 40)), _rec(1, 1, **iou(90, 50))]})
    assert results.per_class_means("quick", ["minent", "advent"], tmp_path) == (
        ["advent"],
        ["road", "sky"],
        [[85.0, 45.0]],
    )
    assert results.per_class_means("quick", ["minent"], tmp_path) == ([], [], [])


def test_the_knob_matrix_scores_each_method_against_its_pairs_source_only(tmp_path):
    shift = lambda so, adabn, oracle: _rec(0, so, adabn={"miou": adabn}, oracle={"miou": oracle})  # noqa: E731
    _write(
        tmp_path / "quick",
        {
            "shift_appearance": [shift(20.0, 35.0, 50.0)],
            "shift_texture": [shift(40.0, 41.0, 45.0)],
            "advent_on_appearance": [_rec(0, 26.0)],
            "advent_on_texture": [_rec(0, 43.0), _rec(1, 99.0)],  # seed 1 has no pair record: not paired
        },
    )
    m = results.knob_matrix("quick", tmp_path)
    assert m["knobs"] == ["appearance", "texture"]  # geometry and layout have no shift record
    assert m["gap"] == {"appearance": 30.0, "texture": 5.0}
    assert m["gains"]["AdaBN alone"] == {"appearance": 15.0, "texture": 1.0}
    assert m["gains"]["advent"] == {"appearance": 6.0, "texture": 3.0}
    assert m["gains"]["sdca"] == {"appearance": None, "texture": None}
    table = results.knob_matrix_markdown(m).splitlines()
    assert table[2] == "| gap (oracle − source-only) | 30.0 | 5.0 |"
    assert table[3] == "| AdaBN alone | +15.0 (50%) | +1.0 (20%) |"
    assert "| `advent` | +6.0 (20%) | +3.0 (60%) |" in table
    assert "| `sdca` | not run | not run |" in table


# ----------------------------------------------------------------------------------------------------------------
# Paired intervals and the papers' claims


def test_the_paired_interval_is_students_t_over_the_per_seed_differences():
    from udalib.results.stats import paired_interval

    i = paired_interval([1.0, 2.0, 3.0])  # mean 2, s = 1, t_{0.975, 2} / √3 = 4.3027 · 0.5774
    assert i.mean == 2.0 and i.half_width == pytest.approx(2.4841, abs=1e-4)
    assert (i.low, i.high) == (pytest.approx(-0.4841, abs=1e-4), pytest.approx(4.4841, abs=1e-4))
    assert i.verdict == "not distinguishable" and i.text() == "+2.0 [-0.5, +4.5], 3 seeds"
    assert paired_interval([4.0, 5.0, 6.0]).verdict == "above 0"  # [+2.5, +7.5]
    assert paired_interval([-4.0, -5.0, -6.0]).verdict == "below 0"
    one = paired_interval([3.0])
    assert one.verdict == "one seed" and math.isnan(one.half_width) and one.text() == "+3.0, one seed"
    assert paired_interval([1.0, 2.0, 3.0], level=0.5).half_width == pytest.approx(0.8165 / math.sqrt(3), abs=1e-4)
    with pytest.raises(ValueError, match="differences: no common seed"):
        paired_interval([])
    with pytest.raises(ValueError, match="level must lie in"):
        paired_interval([1.0, 2.0], level=95)


def test_every_claim_compares_two_catalogue_results_and_every_adapted_method_is_claimed_over_source_only():
    from udalib.results import claims

    assert all({c.better, c.worse} <= set(results.CATALOGUE) and c.better != c.worse for c in claims.CLAIMS)
    over_source = {c.better for c in claims.CLAIMS if c.worse == "source_only"}
    assert over_source == set(results.catalogue_names(kind="trained")) - {
        "source_only",
        "oracle",
        "sdca_source",
        "sdca_ssl",
    }
    with pytest.raises(ValueError, match=r"\['advent_v2'\] not in the results catalogue"):
        claims.Claim("paper", "v2 beats v1", "advent_v2", "advent")


def test_the_claims_table_gives_each_claim_its_verdict_from_the_paired_interval(tmp_path):
    from udalib.results import claims

    so = [20.0, 21.0, 22.0]
    runs = {
        "source_only": so,
        "advent": [s + d for s, d in zip(so, (4.0, 5.0, 6.0))],  # +5 [+2.5, +7.5] over source-only: reproduced
        "minent": [s + d for s, d in zip(so, (5.0, 7.0, 9.0))],  # AdvEnt - MinEnt = -1, -2, -3: [-4.5, +0.5]
        "maxsquare": [s + d for s, d in zip(so, (-6.0, -5.0, -4.0))],  # -5 [-7.5, -2.5]: reversed
        "maxsquare_iw": [21.0],  # one seed
    }
    _write(tmp_path / "quick", {m: [_rec(i, v) for i, v in enumerate(vals)] for m, vals in runs.items()})
    picked = [
        c
        for c in claims.CLAIMS
        if (c.better, c.worse)
        in {
            ("advent", "source_only"),
            ("advent", "minent"),
            ("maxsquare", "source_only"),
            ("maxsquare_iw", "maxsquare"),
            ("bafft", "bafft_step1"),
        }
    ]
    rows = {(r["better"], r["worse"]): r for r in claims.claim_rows("quick", tmp_path, picked)}
    assert {k: r["verdict"] for k, r in rows.items()} == {
        ("advent", "source_only"): "reproduced",
        ("advent", "minent"): "not distinguishable",
        ("maxsquare", "source_only"): "reversed",
        ("maxsquare_iw", "maxsquare"): "one seed",
        ("bafft", "bafft_step1"): "not measured",
    }
    # the published numbers are the catalogue's, both or none
    assert rows[("advent", "minent")]["published"] == (results.published("advent")[0], results.published("minent")[0])
    assert claims.verdict_counts("quick", tmp_path, picked) == {
        "reproduced": 1,
        "not distinguishable": 1,
        "reversed": 1,
        "one seed": 1,
        "not measured": 1,
    }
    table = claims.claims_markdown("quick", tmp_path, picked).splitlines()
    assert table[0] == "| claim | published | here (quick: paired mean, 95 % interval, seeds) | verdict |"
    line = next(row for row in table if "(`advent` vs `minent`)" in row)
    advent, minent = results.CATALOGUE["advent"], results.CATALOGUE["minent"]
    assert line.endswith(
        f"| {advent.published:.1f} vs {minent.published:.1f} ({claims._cite(advent.source, minent.source)}) "
        "| -2.00 [-4.48, +0.48], 3 seeds | not distinguishable |"
    )


def test_published_numbers_stand_beside_the_stage_they_measure(tmp_path):
    """SIM's 49.2 includes SIM's self-training, so BAFFT's step 1 has no published number; the AdvEnt + MinEnt
    ensemble's 45.5 has MinEnt+ER as its second member, and the comparison table says so beside the number."""
    value, note = results.published("bafft_step1")
    assert value is None and "self-training" in note and results.CATALOGUE["bafft_step1"].source is None
    table = results.comparison_markdown("quick", ["advent_minent_ensemble", "bafft_step1"], tmp_path)
    rows = {line.split(" | ")[0].strip("|` "): line for line in table.splitlines()[2:]}
    assert "| 45.5 (with MinEnt+ER, ours plain MinEnt) |" in rows["advent_minent_ensemble"]
    assert "| — |" in rows["bafft_step1"]
