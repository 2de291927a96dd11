"""`udalib data check`: every defect of a broken fixture appears in `problems`, in plain words."""

import numpy as np
from fixtures import save_gray, save_rgb, write_cityscapes, write_crosscity, write_folder, write_gta5, write_synthia

from udalib.data import check_dataset, format_report

RAW = np.array([[7, 7, 8, 8], [26, 26, 23, 0]], dtype=np.uint8)  # road 2, sidewalk 2, car 2, sky 1, void 1


def test_gta5_defects_are_each_reported(tmp_path):
    bad = RAW.copy()
    bad[0, 0] = 40  # not a Cityscapes labelId
    write_gta5(tmp_path, [RAW, bad, RAW, RAW], image_sizes=[(2, 4), (2, 4), (4, 6), (2, 4)])
    (tmp_path / "labels" / "00004.png").rename(tmp_path / "labels" / "00009.png")  # 00004 loses its label
    report = check_dataset(tmp_path, "gta5")
    assert not report.ok
    assert report.pairs == 3
    assert report.images_without_labels == ["00004.png"]
    assert report.labels_without_images == ["00009.png"]
    assert report.size_mismatches == [("00003.png", (6, 4), (4, 2))]
    assert report.unknown_ids == {40: 1} and report.unknown_id_files == {40: 1}
    text = "\n".join(report.problems)
    assert "1 GTA5 pairs have image and label of different sizes (image vs label): 00003.png (6x4 vs 4x2)" in text
    assert "1 GTA5 images have no label: 00004.png" in text
    assert "1 GTA5 labels have no image: 00009.png" in text
    assert "id 40 (1 px in 1 files)" in text
    assert len(report.problems) == 4
    # per-class pixels: 3 labels of 8 px, one road pixel replaced by the unknown id
    pixels = dict(zip(report.classes, report.class_pixels))
    assert (pixels["road"], pixels["sidewalk"], pixels["car"], pixels["sky"]) == (5, 6, 6, 3)
    assert report.ignored_pixels == 4 and sum(report.class_pixels) + report.ignored_pixels == 24
    assert abs(report.class_frequencies["car"] - 0.25) < 1e-9


def test_synthia_8bit_label_is_reported(tmp_path):
    label = np.stack([np.array([[3, 4], [2, 1]], dtype=np.uint16)] * 3, axis=-1)
    write_synthia(tmp_path, [label, label])
    save_rgb(tmp_path / "GT" / "LABELS" / "0000001.png", 2, 2)
    report = check_dataset(tmp_path, "synthia")
    assert report.synthia_8bit == ["0000001.png"] and report.pairs == 1
    assert any(
        "SYNTHIA labels are 8-bit: they must be the 16-bit GT/LABELS PNGs, class id in channel 0" in p
        for p in report.problems
    )
    assert report.class_pixels[:3] == [1, 1, 1] and report.class_pixels[9] == 1  # road, sidewalk, building, sky


def test_clean_cityscapes_is_ok_and_the_table_is_readable(tmp_path):
    write_cityscapes(tmp_path, "val", {"lindau": [RAW], "munster": [RAW]})
    report = check_dataset(tmp_path, "cityscapes", split="val")
    assert report.ok and report.pairs == 2 and report.problems == []
    text = format_report(report)
    assert "Cityscapes" in text and "OK" in text
    assert "road" in text and "25.00%" in text  # 4 road pixels of 16
    assert "classes with no pixel" in text


def test_unlabelled_train_split_and_corrupt_image(tmp_path):
    write_cityscapes(tmp_path, "train", {"aachen": [RAW, RAW]}, labels=False)
    path = tmp_path / "leftImg8bit/train/aachen/aachen_000000_000001_leftImg8bit.png"
    path.write_bytes(path.read_bytes()[:30])
    report = check_dataset(tmp_path, "cityscapes", split="train")
    assert not report.labelled and report.pairs == 1
    assert any("1 files cannot be read" in p and "aachen_000000_000001" in p for p in report.problems)


def test_missing_root_is_a_problem_not_a_crash(tmp_path):
    report = check_dataset(tmp_path / "nowhere", "gta5")
    assert not report.ok and "GTA5 not found under" in report.problems[0]
    assert "PROBLEMS FOUND" in format_report(report)


def test_crosscity_and_folder(tmp_path):
    write_crosscity(tmp_path / "nthu", "Tokyo", 1, [RAW])
    report = check_dataset(tmp_path / "nthu", "crosscity", city="Tokyo")
    assert report.ok and report.split == "test" and len(report.classes) == 13
    assert any("unverified" in n for n in report.notes)
    write_folder(tmp_path / "mine", {"a": np.array([[1, 2, 3]], np.uint8)}, {1: 0, 2: 255}, ["road"])
    save_gray(tmp_path / "mine" / "labels" / "zz.png", np.zeros((1, 1), np.uint8))
    report = check_dataset(tmp_path / "mine", "folder")
    assert report.unknown_ids == {3: 1} and report.labels_without_images == ["zz.png"]
    assert report.class_pixels == [1] and report.ignored_pixels == 2
