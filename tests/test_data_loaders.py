"""Each loader on tiny fixtures in the real layouts: exact label values, order, lists, errors, unknown ids."""

import warnings

import numpy as np
import pytest
import torch
from fixtures import (
    cityscapes_stem,
    save_gray,
    save_rgb,
    write_cityscapes,
    write_crosscity,
    write_folder,
    write_gta5,
    write_png16,
    write_synthia,
)
from PIL import Image
from torch.utils.data import DataLoader

from udalib.data import (
    CITYSCAPES19,
    GTA5,
    SYNTHIA,
    SYNTHIA16,
    Cityscapes,
    CorruptFileError,
    CrossCity,
    DatasetNotFoundError,
    FolderPair,
    LabelFormatError,
    MissingLabelError,
    SizeMismatchWarning,
    UnknownLabelIdWarning,
    build_dataset,
)
from udalib.data.synthia import read_synthia_label

# raw Cityscapes labelIds and the train ids they must become (19 classes)
RAW = np.array([[7, 8, 11, 12], [26, 33, 0, 255], [23, 24, 3, 7]], dtype=np.uint8)
TRAIN = np.array([[0, 1, 2, 3], [13, 18, 255, 255], [10, 11, 255, 0]])


# --------------------------------------------------------------------------------------------- GTA5
def test_gta5_maps_labelids_sorted_and_collates(tmp_path):
    write_gta5(tmp_path, [RAW, RAW[::-1].copy(), RAW])
    ds = GTA5(tmp_path)
    assert [s.name for s in ds.samples] == ["00001.png", "00002.png", "00003.png"]
    image, label, meta = ds[1]
    assert image.dtype == torch.float32 and image.shape == (3, 3, 4)
    assert label.dtype == torch.int64
    np.testing.assert_array_equal(label.numpy(), TRAIN[::-1])
    assert meta == {"name": "00002.png", "index": 1}
    images, labels, metas = next(iter(DataLoader(ds, batch_size=2)))
    assert images.shape == (2, 3, 3, 4) and labels.shape == (2, 3, 4)
    assert metas["name"] == ["00001.png", "00002.png"]
    assert not ds.unknown_id_counts


def test_gta5_list_file_keeps_its_order(tmp_path):
    write_gta5(tmp_path, [RAW, RAW, RAW])
    (tmp_path / "list.txt").write_text("00003.png\n00001.png\n\n")
    assert [s.name for s in GTA5(tmp_path, list_file=tmp_path / "list.txt").samples] == ["00003.png", "00001.png"]
    (tmp_path / "bad.txt").write_text("00009.png\n")
    with pytest.raises(DatasetNotFoundError, match="00009.png"):
        GTA5(tmp_path, list_file=tmp_path / "bad.txt")


def test_gta5_unknown_ids_become_255_counted_and_warn_once(tmp_path):
    raw = RAW.copy()
    raw[0, :2] = 40  # not a Cityscapes labelId
    raw[2, 3] = 77
    write_gta5(tmp_path, [raw, raw])
    ds = GTA5(tmp_path)
    with pytest.warns(UnknownLabelIdWarning, match=r"00001\.png.*\[40, 77\]"):
        _, label, _ = ds[0]
    assert label[0, 0] == 255 and label[0, 1] == 255 and label[2, 3] == 255 and label[0, 2] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds[1]  # counted, no second warning
    assert ds.unknown_id_counts == {40: 4, 77: 2}


def test_gta5_size_mismatch_is_reported_and_label_follows_the_image(tmp_path):
    write_gta5(tmp_path, [RAW, RAW], image_sizes=[(3, 4), (6, 8)])
    ds = GTA5(tmp_path)
    ds[0]
    with pytest.warns(SizeMismatchWarning, match=r"00002\.png: image 8x6 vs label 4x3"):
        image, label, _ = ds[1]
    assert image.shape == (3, 6, 8) and label.shape == (6, 8)
    np.testing.assert_array_equal(label.numpy()[::2, ::2], TRAIN)
    assert ds.size_mismatches == ["00002.png: image 8x6 vs label 4x3"]


def test_gta5_errors_name_the_root_and_the_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=rf"GTA5 not found under {tmp_path}.*expected .*images/NNNNN\.png"):
        GTA5(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DatasetNotFoundError, match=rf"GTA5: no images found in {tmp_path}/images"):
        GTA5(tmp_path)
    write_gta5(tmp_path, [RAW, RAW])
    (tmp_path / "labels" / "00002.png").unlink()
    with pytest.raises(MissingLabelError, match=r"images/00002\.png has no label: expected .*labels/00002\.png"):
        GTA5(tmp_path)


def test_corrupt_image_names_the_file(tmp_path):
    write_gta5(tmp_path, [RAW])
    path = tmp_path / "images" / "00001.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorruptFileError, match=r"cannot read image .*00001\.png"):
        GTA5(tmp_path)[0]


def test_corrupt_label_names_the_file(tmp_path):
    write_gta5(tmp_path, [RAW])
    (tmp_path / "labels" / "00001.png").write_bytes(b"not a png")
    with pytest.raises(CorruptFileError, match=r"cannot read label .*labels/00001\.png"):
        GTA5(tmp_path)[0]


def test_colour_label_is_refused(tmp_path):
    write_gta5(tmp_path, [RAW])
    save_rgb(tmp_path / "labels" / "00001.png", 3, 4)
    with pytest.raises(LabelFormatError, match="one channel of class ids"):
        GTA5(tmp_path)[0]


# --------------------------------------------------------------------------------------------- Cityscapes
def test_cityscapes_two_cities_sorted_names_and_values(tmp_path):
    write_cityscapes(tmp_path, "train", {"zurich": [RAW], "aachen": [RAW, RAW[:, ::-1].copy()]})
    write_cityscapes(tmp_path, "val", {"lindau": [RAW], "frankfurt": [RAW]})
    train = Cityscapes(tmp_path, "train")
    assert [s.name for s in train.samples] == [
        f"aachen/{cityscapes_stem('aachen', 0)}_leftImg8bit.png",
        f"aachen/{cityscapes_stem('aachen', 1)}_leftImg8bit.png",
        f"zurich/{cityscapes_stem('zurich', 0)}_leftImg8bit.png",
    ]
    _, label, meta = train[1]
    np.testing.assert_array_equal(label.numpy(), TRAIN[:, ::-1])
    assert meta["name"] == "aachen/aachen_000000_000001_leftImg8bit.png"
    val = Cityscapes(tmp_path, "val")
    assert [s.name.split("/")[0] for s in val.samples] == ["frankfurt", "lindau"]
    np.testing.assert_array_equal(val[0][1].numpy(), TRAIN)


def test_cityscapes_16_class_protocol(tmp_path):
    raw = np.array([[22, 23, 27, 28], [31, 32, 33, 7]], dtype=np.uint8)
    write_cityscapes(tmp_path, "val", {"munster": [raw]})
    np.testing.assert_array_equal(
        Cityscapes(tmp_path, "val", protocol=SYNTHIA16)[0][1].numpy(), [[255, 9, 255, 13], [255, 14, 15, 0]]
    )


def test_cityscapes_list_file(tmp_path):
    write_cityscapes(tmp_path, "train", {"aachen": [RAW, RAW], "bochum": [RAW]})
    names = ["bochum/bochum_000000_000000_leftImg8bit.png", "aachen/aachen_000000_000001_leftImg8bit.png"]
    (tmp_path / "train.txt").write_text("\n".join(names) + "\n")
    assert [s.name for s in Cityscapes(tmp_path, "train", list_file=tmp_path / "train.txt").samples] == names


def test_cityscapes_pseudo_label_dir(tmp_path):
    write_cityscapes(tmp_path, "train", {"aachen": [RAW, RAW]})
    pseudo = tmp_path / "pseudo"
    ids = np.array([[0, 18, 255, 5]] * 3, dtype=np.uint8)
    for j in range(2):
        save_gray(pseudo / "aachen" / f"{cityscapes_stem('aachen', j)}_pseudo_trainIds.png", ids)
    ds = Cityscapes(tmp_path, "train", pseudo_label_dir=pseudo)
    np.testing.assert_array_equal(ds[1][1].numpy(), ids)  # already train ids: not mapped again
    (pseudo / "aachen" / f"{cityscapes_stem('aachen', 1)}_pseudo_trainIds.png").unlink()
    with pytest.raises(MissingLabelError, match=r"aachen_000000_000001_pseudo_trainIds\.png"):
        Cityscapes(tmp_path, "train", pseudo_label_dir=pseudo)


def test_pseudo_label_ids_beyond_the_classes_are_unknown(tmp_path):
    write_cityscapes(tmp_path, "train", {"aachen": [RAW]})
    save_gray(
        tmp_path / "p" / "aachen" / f"{cityscapes_stem('aachen', 0)}_pseudo_trainIds.png",
        np.full((3, 4), 19, dtype=np.uint8),
    )
    ds = Cityscapes(tmp_path, "train", pseudo_label_dir=tmp_path / "p")
    with pytest.warns(UnknownLabelIdWarning):
        assert (ds[0][1] == 255).all()
    assert ds.unknown_id_counts == {19: 12}


def test_cityscapes_train_without_gtfine_is_unlabelled_but_val_is_required(tmp_path):
    write_cityscapes(tmp_path, "train", {"aachen": [RAW]}, labels=False)
    ds = Cityscapes(tmp_path, "train")
    assert not ds.labelled
    image, label, _ = ds[0]
    assert label.shape == image.shape[1:] and (label == 255).all()
    write_cityscapes(tmp_path, "val", {"lindau": [RAW]}, labels=False)
    with pytest.raises(DatasetNotFoundError, match=r"gtFine/val/<city>/\*_gtFine_labelIds\.png"):
        Cityscapes(tmp_path, "val")


def test_cityscapes_errors(tmp_path):
    with pytest.raises(
        DatasetNotFoundError,
        match=rf"under {tmp_path}.*expected {tmp_path}/leftImg8bit/train/<city>/\*_leftImg8bit\.png",
    ):
        Cityscapes(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        Cityscapes(tmp_path, "test")
    write_cityscapes(tmp_path, "val", {"lindau": [RAW, RAW]})
    (tmp_path / "gtFine/val/lindau/lindau_000000_000001_gtFine_labelIds.png").unlink()
    with pytest.raises(MissingLabelError, match=r"lindau_000000_000001_leftImg8bit\.png has no label"):
        Cityscapes(tmp_path, "val")


# --------------------------------------------------------------------------------------------- SYNTHIA
def _synthia_label() -> np.ndarray:
    """(5, 4, 3) uint16: class ids in channel 0, instance ids (large, ≠ channel 0) in 1, zeros in 2.

    Five rows, so the fixture writer uses each of PNG's five scanline filters once.
    """
    ids = np.array([[3, 4, 2, 21], [1, 10, 8, 0], [16, 18, 20, 11], [5, 7, 15, 9], [6, 17, 19, 12]], dtype=np.uint16)
    instances = (ids * 257 + 1000).astype(np.uint16)
    return np.stack([ids, instances, np.zeros_like(ids)], axis=-1)


def test_synthia_reads_channel_0_of_a_16bit_png(tmp_path):
    label = _synthia_label()
    write_synthia(tmp_path, [label, label])
    ds = SYNTHIA(tmp_path)
    assert [s.name for s in ds.samples] == ["0000000.png", "0000001.png"]
    np.testing.assert_array_equal(
        ds[0][1].numpy(), [[0, 1, 2, 3], [9, 10, 12, 255], [255, 255, 255, 15], [4, 5, 6, 7], [8, 11, 13, 14]]
    )
    np.testing.assert_array_equal(
        SYNTHIA(tmp_path, protocol=CITYSCAPES19)[0][1].numpy(),
        [[0, 1, 2, 3], [10, 11, 13, 255], [9, 14, 16, 18], [4, 5, 6, 7], [8, 12, 15, 17]],
    )
    assert not ds.unknown_id_counts


def test_synthia_high_ids_in_channel_0_are_unknown(tmp_path):
    label = _synthia_label()
    label[0, 0, 0] = 3 + 256  # would alias to road (3) if the label were truncated to 8 bits
    write_synthia(tmp_path, [label])
    ds = SYNTHIA(tmp_path)
    with pytest.warns(UnknownLabelIdWarning, match=r"\[259\]"):
        assert ds[0][1][0, 0] == 255
    assert ds.unknown_id_counts == {259: 1}


def test_synthia_8bit_label_is_refused(tmp_path):
    write_synthia(tmp_path, [_synthia_label()])
    save_rgb(tmp_path / "GT" / "LABELS" / "0000000.png", 5, 4)
    with pytest.raises(LabelFormatError, match=r"0000000\.png is 8-bit.*16-bit GT/LABELS PNGs.*channel 0"):
        SYNTHIA(tmp_path)[0]


def test_synthia_missing_root(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"SYNTHIA not found.*RGB/NNNNNNN\.png.*GT/LABELS"):
        SYNTHIA(tmp_path / "nowhere")


def test_read_synthia_label_is_exact_where_8bit_reading_is_garbage(tmp_path):
    label = _synthia_label()
    write_png16(tmp_path / "x.png", label)
    np.testing.assert_array_equal(read_synthia_label(tmp_path / "x.png"), label[..., 0])
    with Image.open(tmp_path / "x.png") as im:  # the pitfall: PIL silently keeps the high byte of each sample
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), label >> 8)


# --------------------------------------------------------------------------------------------- Cross-City
def test_crosscity_train_unlabelled_and_test_labelled(tmp_path):
    raw = np.array([[7, 23, 26, 28], [32, 33, 12, 0]], dtype=np.uint8)
    write_crosscity(tmp_path, "Rome", n_train=3, test_labels=[raw, raw])
    train = CrossCity(tmp_path, "Rome", "train")
    assert len(train) == 3 and not train.labelled and (train[2][1] == 255).all()
    test = CrossCity(tmp_path, "Rome", "test")
    assert [s.label.name for s in test.samples] == ["pano_00000_eval.png", "pano_00001_eval.png"]
    np.testing.assert_array_equal(test[0][1].numpy(), [[0, 6, 9, 10], [11, 12, 255, 255]])
    assert test.num_classes == 13
    with pytest.raises(ValueError, match="Rio"):
        CrossCity(tmp_path, "Paris", "test")
    with pytest.raises(DatasetNotFoundError, match=r"Tokyo/Images/Train"):
        CrossCity(tmp_path, "Tokyo", "train")


def test_crosscity_id_map_override(tmp_path):
    write_crosscity(tmp_path, "Rio", 0, [np.array([[0, 1, 12]], dtype=np.uint8)], label_suffix="")
    ds = CrossCity(tmp_path, "Rio", "test", id_map={i: i for i in range(13)})
    np.testing.assert_array_equal(ds[0][1].numpy(), [[0, 1, 12]])


# --------------------------------------------------------------------------------------------- folder
def test_folder_pairs_by_stem_with_dict_and_json(tmp_path):
    labels = {"b_frame": np.array([[1, 2], [5, 0]], dtype=np.uint16), "a_frame": np.array([[2, 9]], dtype=np.uint16)}
    write_folder(tmp_path, labels, {1: 0, 2: 1, 5: 2, 0: 255}, ["road", "building", "sky"])
    ds = FolderPair(tmp_path / "images", tmp_path / "labels", tmp_path / "id_map.json")
    assert [s.name for s in ds.samples] == ["a_frame.jpg", "b_frame.jpg"]
    assert ds.classes == ("road", "building", "sky")
    np.testing.assert_array_equal(ds[1][1].numpy(), [[0, 1], [2, 255]])
    with pytest.warns(UnknownLabelIdWarning, match=r"a_frame\.png.*\[9\]"):
        np.testing.assert_array_equal(ds[0][1].numpy(), [[1, 255]])
    same = FolderPair(tmp_path / "images", tmp_path / "labels", {1: 0, 2: 1, 5: 2, 0: 255}, classes=("r", "b", "s"))
    np.testing.assert_array_equal(same[1][1].numpy(), [[0, 1], [2, 255]])
    with pytest.raises(ValueError, match="train ids 0..1 or 255"):
        FolderPair(tmp_path / "images", tmp_path / "labels", {1: 7}, classes=("a", "b"))
    (tmp_path / "labels" / "a_frame.png").unlink()
    with pytest.raises(MissingLabelError, match=r"a_frame\.jpg has no label"):
        FolderPair(tmp_path / "images", tmp_path / "labels", tmp_path / "id_map.json")


# --------------------------------------------------------------------------------------------- registry
def test_build_dataset_registry(tmp_path):
    write_gta5(tmp_path / "gta", [RAW])
    write_cityscapes(tmp_path / "cs", "val", {"lindau": [RAW]})
    write_synthia(tmp_path / "syn", [_synthia_label()])
    write_crosscity(tmp_path / "nthu", "Taipei", 2, [])
    write_folder(tmp_path / "mine", {"x": np.ones((2, 2), np.uint8)}, {1: 0}, ["road"])
    assert isinstance(build_dataset("gta5", tmp_path / "gta"), GTA5)
    assert build_dataset("cityscapes", tmp_path / "cs", "val", protocol="synthia16").num_classes == 16
    assert build_dataset("synthia", tmp_path / "syn").num_classes == 16
    assert len(build_dataset("crosscity", tmp_path / "nthu", "train", city="Taipei")) == 2
    assert (build_dataset("folder", tmp_path / "mine")[0][1] == 0).all()
    with pytest.raises(ValueError, match="gta5, cityscapes, synthia, crosscity, folder"):
        build_dataset("gta6", tmp_path)
    with pytest.raises(ValueError, match="list_file"):
        build_dataset("gta5", tmp_path / "gta", "val")


# --------------------------------------------------------------------------------------------- named pipelines
@pytest.mark.parametrize(
    "method, first_steps",
    [
        ("source_only", ["Resize", "ToTensor"]),
        ("sdca", ["Resize", "ColorJitter", "RandomGrayscale", "GaussianBlur"]),  # its row: source_aug="sdca_color"
        ("sdca_ssl", ["RandomScale", "RandomCrop", "HorizontalFlip", "ToTensor"]),  # labelled_aug="scale_crop"
    ],
)
def test_the_labelled_set_takes_its_presets_pipeline_and_its_plain_copy_none(tmp_path, method, first_steps):
    import dataclasses

    from udalib.data.domains import build_domains
    from udalib.data.synthcity import SynthCitySpec, generate
    from udalib.presets import resolve

    root = generate(tmp_path / "sc", SynthCitySpec(height=16, width=32, n_source=1, n_target_train=1, n_target_val=1))
    cfg = resolve(method, "quick", data_root=str(root))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, pseudo_label_dir=None))  # ground truth here
    dom = build_domains(cfg)
    names = [type(t).__name__ for t in dom.labelled.transform.transforms]
    assert names[: len(first_steps)] == first_steps
    assert [type(t).__name__ for t in dom.labelled_eval.transform.transforms] == ["Resize", "ToTensor", "Normalize"]
    torch.manual_seed(0)
    image, label = dom.labelled[0][:2]
    size = cfg.data.target_size if cfg.data.labelled == "target" else cfg.data.source_size
    assert image.shape[1:] == label.shape == size  # scale_crop pads the 16x32 images to its crop
