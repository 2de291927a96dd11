"""SynthCity: deterministic, every Cityscapes class present, written in layouts the real loaders read back."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from udalib.config import SHIFT_KNOBS, DataConfig
from udalib.data.cityscapes import Cityscapes
from udalib.data.gta5 import GTA5
from udalib.data.synthcity import (
    SOURCE_STYLE,
    TARGET_STYLE,
    Shift,
    SynthCitySpec,
    cache_dir,
    generate,
    parse_shift,
    render_item,
    stored_meta,
    style_for,
)

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


def _numbers(value) -> list[float]:
    """The numbers of a style field, flattened (dicts by sorted key, tuples in order)."""
    if isinstance(value, dict):
        return [x for k in sorted(value) for x in _numbers(value[k])]
    if isinstance(value, tuple):
        return [x for v in value for x in _numbers(v)]
    return [float(value)]


def _same_style(a, b) -> bool:
    fields = dataclasses.fields(a)
    return all(_numbers(getattr(a, f.name)) == pytest.approx(_numbers(getattr(b, f.name))) for f in fields)


@pytest.mark.parametrize("knob", SHIFT_KNOBS)
def test_a_knob_alone_moves_its_own_fields_and_no_other(knob):
    alone = style_for("target", Shift.only(knob))
    for f in dataclasses.fields(alone):
        expected = TARGET_STYLE if f.metadata["knob"] == knob else SOURCE_STYLE
        assert _numbers(getattr(alone, f.name)) == pytest.approx(_numbers(getattr(expected, f.name))), (knob, f.name)
    owned = [f.name for f in dataclasses.fields(alone) if f.metadata["knob"] == knob]
    assert owned and any(getattr(SOURCE_STYLE, n) != getattr(TARGET_STYLE, n) for n in owned)


def test_strengths_interpolate_between_the_styles():
    assert _same_style(style_for("target", Shift(0, 0, 0, 0, 0)), SOURCE_STYLE)
    assert _same_style(style_for("target", Shift()), TARGET_STYLE)
    assert not _same_style(SOURCE_STYLE, TARGET_STYLE)
    half = style_for("target", Shift(geometry=0.5))
    assert half.camera_height == pytest.approx((SOURCE_STYLE.camera_height + TARGET_STYLE.camera_height) / 2)
    double = style_for("target", Shift(priors=2.0)).object_rate["person"]
    assert double == pytest.approx(2 * TARGET_STYLE.object_rate["person"] - SOURCE_STYLE.object_rate["person"])
    with pytest.raises(ValueError, match="knob 'texture' must be a strength in \\[0, 2\\]"):
        Shift(texture=3)


def test_the_source_does_not_depend_on_the_shift_and_a_knob_off_keeps_the_source_look():
    a_img, a_lbl = render_item(SynthCitySpec(shift=Shift.only("layout")), "source", "train", 2)
    b_img, b_lbl = render_item(QUICK, "source", "train", 2)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lbl, b_lbl)
    # geometry alone: the target's horizon is lower, its colours and flat surfaces are the source's
    geo = [render_item(SynthCitySpec(shift=Shift.only("geometry")), "target", "train", i) for i in range(10)]
    src = [render_item(QUICK, "source", "train", i) for i in range(10)]
    road_top = lambda items: np.mean([np.flatnonzero((lab == 0).any(1)).min() for _, lab in items])  # noqa: E731
    assert road_top(geo) > road_top(src) + 5
    road_colour = lambda items: np.median(np.concatenate([i[lab == 0] for i, lab in items]), axis=0)  # noqa: E731
    assert np.abs(road_colour(geo) - road_colour(src)).max() <= 3


def test_shift_words_and_the_config_field():
    assert parse_shift([]) == Shift()
    assert parse_shift(["texture=0", "geometry=1.5"]) == Shift(texture=0.0, geometry=1.5)
    assert parse_shift(["only=priors"]) == Shift(0, 0, 0, 1, 0)
    with pytest.raises(ValueError, match="KNOB=STRENGTH with KNOB one of"):
        parse_shift(["colour=1"])
    with pytest.raises(ValueError, match="must be a number"):
        parse_shift(["texture=high"])
    with pytest.raises(ValueError, match="synthcity_shift must be 5 strengths in \\[0, 2\\]"):
        DataConfig(synthcity_shift=(1.0, 1.0))
    # the cache keys and the stored spec carry the knobs
    default, texture_only = DataConfig(), DataConfig(synthcity_shift=Shift.only("texture").as_tuple())
    assert cache_dir(default) != cache_dir(texture_only)
    assert stored_meta(SynthCitySpec(shift=Shift.only("texture")))["shift"] == dict(
        appearance=0.0, texture=1.0, geometry=0.0, priors=0.0, layout=0.0
    )


def test_a_folder_of_another_shift_is_not_taken_for_the_requested_one(tmp_path):
    spec = SynthCitySpec(height=32, width=64, n_source=2, n_target_train=1, n_target_val=1)
    root = generate(tmp_path / "sc", spec, workers=1)
    with pytest.raises(FileExistsError, match="does not hold SynthCity"):
        generate(root, dataclasses.replace(spec, shift=Shift.only("texture")), workers=1)


def test_labels_in_the_cityscapes_layout_are_read_at_their_own_size(tmp_path):
    from udalib.data.domains import target_label_size
    from udalib.presets import resolve

    root = generate(tmp_path / "sc", SynthCitySpec(height=32, width=64, n_source=1, n_target_train=1, n_target_val=1))
    cfg = resolve("source_only", "quick", data_root=str(root))
    target = str(root / "target")
    as_cityscapes = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, target="cityscapes", target_root=target)
    )
    assert target_label_size(as_cityscapes) == (32, 64)  # SynthCity written in the Cityscapes layout
    nowhere = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, target="cityscapes", target_root=None))
    assert target_label_size(nowhere) == (1024, 2048)  # the official size when there is nothing to read


def test_labels_can_be_scored_at_a_resized_protocol(tmp_path):
    from udalib.data.domains import build_domains
    from udalib.presets import resolve
    from udalib.results import data_identity

    root = generate(tmp_path / "sc", SynthCitySpec(height=32, width=64, n_source=1, n_target_train=1, n_target_val=1))
    cfg = resolve("source_only", "quick", data_root=str(root))
    assert tuple(build_domains(cfg).target_val[0][1].shape) == (32, 64)  # full resolution by default
    assert "eval_label_size" not in data_identity(cfg)
    half = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, eval_label_size=(16, 32)))
    assert tuple(build_domains(half).target_val[0][1].shape) == (16, 32)  # UDAclustering's half-resolution labels
    assert data_identity(half)["eval_label_size"] == [16, 32]  # the records say how they were scored
    with pytest.raises(ValueError, match="eval_label_size must be"):
        DataConfig(eval_label_size=(0, 32))


def test_generation_shows_a_bar_over_the_images_and_its_own_time(tmp_path, capsys):
    spec = SynthCitySpec(height=16, width=32, n_source=20, n_target_train=3, n_target_val=2)
    pooled = generate(tmp_path / "pooled", spec, workers=2)
    out, err = capsys.readouterr()
    assert "generating SynthCity: 25 images at 16x32" in out and "25 images written in" in out
    assert "SynthCity: 100%" in err and "25/25" in err
    alone = generate(tmp_path / "alone", spec, workers=1)  # the same images whichever process draws them
    for path in sorted(pooled.rglob("*.png")):
        assert path.read_bytes() == (alone / path.relative_to(pooled)).read_bytes()
