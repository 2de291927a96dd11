"""The pre-flight data check: every broken file of a run's splits named in one DataError before training starts."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures import save_rgb, write_cityscapes, write_gta5

from udalib.config import RunConfig
from udalib.data.check import check_dataset, format_report, sample_indices
from udalib.data.preflight import DataError, check_run_data, preflight
from udalib.data.synthcity import SynthCitySpec, generate
from udalib.presets import resolve

RAW = np.array([[7, 7, 8, 8], [26, 26, 23, 0]], dtype=np.uint8)  # road, sidewalk, car, sky, void
SPEC = SynthCitySpec(height=16, width=32, n_source=12, n_target_train=6, n_target_val=10)


@pytest.fixture(scope="module")
def synthcity_set(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("sc") / "set", SPEC, workers=1)


@pytest.fixture
def sc(synthcity_set, tmp_path) -> Path:
    """A private copy of the tiny SynthCity set, to break."""
    return Path(shutil.copytree(synthcity_set, tmp_path / "sc"))


def sc_config(root: Path, method: str = "source_only", **data) -> RunConfig:
    cfg = resolve(method, "quick", data_root=str(root))
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **data))


def real_config(source: Path, target: Path, method: str = "source_only") -> RunConfig:
    cfg = resolve(method, "quick")
    data = dataclasses.replace(
        cfg.data, source="gta5", target="cityscapes", source_root=str(source), target_root=str(target)
    )
    return dataclasses.replace(cfg, data=data)


def val_files(root: Path) -> list[tuple[Path, Path]]:
    """(image, label) of target val, in the loader's order."""
    images = sorted(
        (root / "target" / "leftImg8bit" / "val").glob("*/*.png"), key=lambda p: f"{p.parent.name}/{p.name}"
    )
    return [
        (p, Path(str(p).replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit", "_gtFine_labelIds")))
        for p in images
    ]


def cut(path: Path, keep: float = 0.5) -> None:
    """Truncate a valid PNG after its header: the header (size) still reads, the pixels do not."""
    data = path.read_bytes()
    path.write_bytes(data[: max(60, int(len(data) * keep))])


def test_a_clean_set_passes_and_says_what_it_read(sc):
    report = preflight(sc_config(sc))
    assert report.ok and not report.warnings
    assert (report.images, report.labels) == (28, 28)  # 12 source + 6 target train + 10 target val, each paired
    assert report.decoded == 8 + 6 + 8  # 8 per split, or all of a smaller split
    assert [s.role for s in report.splits] == ["source", "target train", "target val"]
    text = str(report)
    assert "28 images, 28 labels, 22 decoded" in text and ": OK" in text
    full = preflight(sc_config(sc), full=True)
    assert full.decoded == 28 and "every file decoded" in str(full)


def test_the_sample_always_holds_the_first_and_the_last_file():
    assert sample_indices(200, 8) == [0, 28, 57, 85, 114, 142, 171, 199]
    assert sample_indices(5, 8) == [0, 1, 2, 3, 4] and sample_indices(1, 8) == [0] and sample_indices(0, 8) == []
    assert sample_indices(10, 1) == [0, 9]


def test_truncated_images_first_last_in_the_fast_check_middle_with_full(sc):
    src = sorted((sc / "source" / "images").glob("*.png"))
    middle = next(i for i in range(12) if i not in sample_indices(12, 8))  # the fast check decodes 8 of 12
    cut(src[0])  # the first of its split: always decoded
    cut(src[middle])
    with pytest.raises(DataError) as err:
        preflight(sc_config(sc))
    message = str(err.value)
    assert f"cannot read image {src[0]}" in message
    assert f"cannot read image {src[middle]}" not in message  # its header is intact and it was not decoded
    assert "source (GTA5 at" in message and "1 problem(s)" in message
    with pytest.raises(DataError) as err:
        preflight(sc_config(sc), full=True)
    assert f"cannot read image {src[middle]}" in str(err.value) and f"cannot read image {src[0]}" in str(err.value)


def test_truncated_target_val_label_is_named(sc):
    (_, last_label) = val_files(sc)[-1]
    cut(last_label)
    with pytest.raises(DataError) as err:
        preflight(sc_config(sc))
    message = str(err.value)
    assert f"target val (Cityscapes at {sc / 'target'}, split val)" in message
    assert f"cannot read label {last_label}" in message
    # a label cut before its size is read is found without decoding, wherever it is
    (_, middle_label) = val_files(sc)[4]
    middle_label.write_bytes(middle_label.read_bytes()[:20])
    report = check_run_data(sc_config(sc))
    assert any(f"cannot read label {middle_label}" in e for e in report.errors)


def test_labels_entirely_outside_the_id_table(tmp_path):
    outside = np.full((2, 4), 40, dtype=np.uint8)  # no Cityscapes labelId: every pixel becomes 255
    write_gta5(tmp_path / "gta5", [outside] * 3)
    write_cityscapes(tmp_path / "cs", "train", {"aachen": [RAW]}, labels=False)
    write_cityscapes(tmp_path / "cs", "val", {"lindau": [RAW]})
    with pytest.raises(DataError) as err:
        preflight(real_config(tmp_path / "gta5", tmp_path / "cs"))
    message = str(err.value)
    assert "1 problem(s)" in message  # the unknown ids are a warning; a set that is all ignore is the error
    assert "all 3 labels decoded are ignore (255) in every pixel" in message
    assert "Cityscapes labelId table (ids outside it: 40)" in message
    assert "00001.png, 00002.png, 00003.png" in message
    # the data check says the same
    report = check_dataset(tmp_path / "gta5", "gta5")
    assert report.kinds == ["unknown_ids", "void"] and "all 3 labels read are ignore (255)" in report.problems[1]


def test_missing_gtfine_is_caught_by_the_preflight_and_by_the_default_data_check(tmp_path):
    write_gta5(tmp_path / "gta5", [RAW, RAW])
    write_cityscapes(tmp_path / "cs", "train", {"aachen": [RAW]}, labels=False)
    write_cityscapes(tmp_path / "cs", "val", {"lindau": [RAW]}, labels=False)  # gtFine/val missing
    with pytest.raises(DataError) as err:
        preflight(real_config(tmp_path / "gta5", tmp_path / "cs"))
    assert f"no folder {tmp_path / 'cs' / 'gtFine' / 'val'}" in str(err.value)
    report = check_dataset(tmp_path / "cs", "cityscapes")  # every split by default
    assert not report.ok and report.split == "train+val"
    assert report.problems[0].startswith("val: Cityscapes not found under") and "gtFine/val" in report.problems[0]
    assert "train: this split is read without labels" in report.notes[0]
    assert "split train+val: PROBLEMS FOUND" in format_report(report)
    # the oracle needs target train labels: a target without gtFine/train is an error for it only
    oracle = real_config(tmp_path / "gta5", tmp_path / "cs", method="oracle")
    errors = check_run_data(oracle).errors
    assert any("no labels: the run trains on target train labels" in e for e in errors)


def test_missing_leftimg8bit_train_and_every_problem_in_one_error(tmp_path):
    write_gta5(tmp_path / "gta5", [RAW, RAW], image_sizes=[(2, 4), (3, 5)])  # 00002: image 5x3, label 4x2
    write_cityscapes(tmp_path / "cs", "val", {"lindau": [RAW]})
    write_cityscapes(tmp_path / "cs", "val", {"munster": [RAW[:, :3]]})  # image and label at 3x2 ...
    save_rgb(
        tmp_path / "cs/leftImg8bit/val/munster/munster_000000_000000_leftImg8bit.png", 4, 6
    )  # ... then the image at 6x4
    report = check_run_data(real_config(tmp_path / "gta5", tmp_path / "cs"))
    # the GTA5 release has a few pairs of different sizes: a warning there, an error anywhere else
    assert len(report.warnings) == 1 and "00002.png (5x3 vs 4x2)" in report.warnings[0]
    assert len(report.errors) == 2
    assert "target train (Cityscapes at" in report.errors[0] and "leftImg8bit/train" in report.errors[0]
    assert "target val" in report.errors[1]
    assert "munster/munster_000000_000000_leftImg8bit.png (6x4 vs 3x2)" in report.errors[1]
    with pytest.raises(DataError, match=r"2 problem\(s\)") as err:
        preflight(real_config(tmp_path / "gta5", tmp_path / "cs"))
    assert "leftImg8bit/train" in str(err.value) and "(6x4 vs 3x2)" in str(err.value)


def test_size_mismatch_in_synthcity_is_an_error(sc):
    image, _ = val_files(sc)[3]
    save_rgb(image, 8, 8)
    with pytest.raises(DataError) as err:
        preflight(sc_config(sc))
    assert f"{image.parent.name}/{image.name} (8x8 vs 32x16)" in str(err.value)


def test_pseudo_label_folder_missing_files(sc, tmp_path):
    pl = tmp_path / "pl"
    train = sorted((sc / "target" / "leftImg8bit" / "train").glob("*/*.png"))
    for p in train[:-1]:  # the last image gets no pseudo-label
        out = pl / p.parent.name / p.name.replace("_leftImg8bit.png", "_pseudo_trainIds.png")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(str(p).replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit", "_gtFine_labelIds")), out)
    cfg = sc_config(sc, method="oracle", pseudo_label_dir=str(pl))
    with pytest.raises(DataError) as err:
        preflight(cfg)
    message = str(err.value)
    last = train[-1]
    expected = pl / last.parent.name / last.name.replace("_leftImg8bit.png", "_pseudo_trainIds.png")
    assert f"target train pseudo-labels in {pl}" in message
    assert f"1 Cityscapes images have no label: {last.parent.name}/{last.name} (expected, e.g., {expected})" in message
    # a stage reference is made later by the stage cache: not checked yet
    staged = preflight(sc_config(sc, method="oracle", pseudo_label_dir="stage:sdca"))
    assert "made by a cached stage" in staged.notes[0]
    missing = check_run_data(sc_config(sc, method="oracle", pseudo_label_dir=str(tmp_path / "nowhere")))
    assert any("pseudo-labels not found" in e and str(tmp_path / "nowhere") in e for e in missing.errors)


def test_a_run_that_does_not_say_where_its_data_is(tmp_path):
    cfg = real_config(tmp_path / "gta5", tmp_path / "cs")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source_root=None, target_root=None))
    report = check_run_data(cfg)
    assert report.errors == ["no target_root and no source_root given: the run does not say where its data is"]


def test_the_check_s_time_leaves_out_the_generation_before_it(sc, monkeypatch):
    """The plan may generate SynthCity first (minutes); the time the check reports is its own."""
    import time

    from udalib.data import preflight as module

    real = module.ensure_synthcity

    def slow_generation(cfg):
        time.sleep(1.0)
        return real(cfg)

    monkeypatch.setattr(module, "ensure_synthcity", slow_generation)
    report = check_run_data(sc_config(sc))
    assert report.ok and report.seconds < 1.0
