"""SynthCity: deterministic, every Cityscapes class present, written in layouts the real loaders read back."""

from __future__ import annotations

import numpy as np
import pytest

from udalib.data.cityscapes import Cityscapes
from udalib.data.gta5 import GTA5
from udalib.data.synthcity import SynthCitySpec, generate, render_item

QUICK = SynthCitySpec()  # the quick set's spec (2000 / 500 / 200 at 128x256)


def test_rendering_is_a_pure_function_of_the_item():
    a_img, a_lbl = render_item(QUICK, "target", "train", 7)
    b_img, b_lbl = render_item(QUICK, "target", "train", 7)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lbl, b_lbl)
    c_img, _ = render_item(QUICK, "target", "train", 8)
    assert not np.array_equal(a_img, c_img)
    assert a_img.shape == (128, 256, 3) and a_lbl.shape == (128, 256)


def test_any_resolution():
    img, lbl = render_item(SynthCitySpec(height=72, width=128), "source", "train", 0)
    assert img.shape == (72, 128, 3) and lbl.shape == (72, 128)


def test_every_class_occurs_in_the_quick_set():
    seen = np.zeros(19, dtype=bool)
    for domain, split, n in (("source", "train", 150), ("target", "train", 60), ("target", "val", 40)):
        for i in range(n):  # the first items of each part of the quick set
            _, lbl = render_item(QUICK, domain, split, i)
            seen |= np.bincount(lbl.ravel(), minlength=256)[:19] > 0
    assert seen.all(), f"classes never drawn: {np.flatnonzero(~seen).tolist()}"


def test_domains_differ_in_appearance_and_camera():
    src = [render_item(QUICK, "source", "train", i) for i in range(20)]
    tgt = [render_item(QUICK, "target", "train", i) for i in range(20)]
    # the road (train id 0) starts at the horizon, which sits lower in the target (lower camera)
    road_top = lambda items: np.mean([np.flatnonzero((lab == 0).any(1)).min() for _, lab in items])  # noqa: E731
    assert road_top(tgt) > road_top(src)
    noise = lambda items: np.mean([np.abs(np.diff(i.astype(float), axis=1)).mean() for i, _ in items])  # noqa: E731
    assert noise(tgt) > 1.5 * noise(src)  # texture and sensor noise


def test_written_layouts_read_back_with_the_real_loaders(tmp_path):
    spec = SynthCitySpec(seed=3, height=32, width=64, n_source=4, n_target_train=3, n_target_val=2)
    root = generate(tmp_path / "sc", spec, workers=1)
    gta = GTA5(root / "source")
    assert len(gta) == 4 and gta.samples[0].name == "00000.png"
    _, lbl = render_item(spec, "source", "train", 0)
    assert np.array_equal(gta.load_label(0), lbl)
    val = Cityscapes(root / "target", "val")
    assert len(val) == 2 and len(Cityscapes(root / "target", "train")) == 3
    names = [s.name for s in val.samples]
    i = names.index("dunmore/dunmore_000001_000019_leftImg8bit.png")
    assert np.array_equal(val.load_label(i), render_item(spec, "target", "val", 1)[1])
    assert generate(tmp_path / "sc", spec) == root  # same spec: nothing to do
    with pytest.raises(FileExistsError, match="does not hold SynthCity"):
        generate(
            tmp_path / "sc", SynthCitySpec(seed=4, height=32, width=64, n_source=1, n_target_train=1, n_target_val=1)
        )


def test_overwrite_moves_the_old_set_aside_so_no_stale_image_remains(tmp_path):
    small = SynthCitySpec(height=32, width=64, n_source=3, n_target_train=1, n_target_val=1)
    root = generate(tmp_path / "sc", small, workers=1)
    fewer = SynthCitySpec(height=32, width=64, n_source=2, n_target_train=1, n_target_val=1)
    generate(root, fewer, workers=1, overwrite=True)
    assert sorted(p.name for p in (root / "source" / "images").iterdir()) == ["00000.png", "00001.png"]
    (aside,) = tmp_path.glob("sc.previous-*")
    assert len(list((aside / "source" / "images").iterdir())) == 3  # the old set, kept whole


def test_a_set_made_at_another_size_is_read_as_it_is(tmp_path):
    from udalib.data.domains import build_domains, target_label_size
    from udalib.presets import resolve

    spec = SynthCitySpec(height=48, width=96, n_source=3, n_target_train=2, n_target_val=2)
    root = generate(tmp_path / "sc", spec, workers=1)
    cfg = resolve("source_only", "quick", data_root=str(root))  # the preset expects 128x256, 2000/500/200
    assert cfg.data.synthcity_size == (128, 256)
    domains = build_domains(cfg)  # neither regenerates nor refuses the folder
    assert (len(domains.labelled), len(domains.target_train), len(domains.target_val)) == (3, 2, 2)
    assert target_label_size(cfg) == (48, 96) == tuple(domains.target_val[0][1].shape)
    empty = resolve("source_only", "quick", data_root=str(tmp_path / "new"))
    assert target_label_size(empty) == (128, 256)  # not generated yet: the preset's size
