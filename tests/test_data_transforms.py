"""Paired transforms: nearest labels, 255 padding, normalisation values, presets."""

import numpy as np
import pytest
import torch
from PIL import Image

from udalib.config import LABELLED_AUGS, SOURCE_AUGS, DataConfig, RunConfig, TrainConfig
from udalib.data.transforms import (
    NORMALIZATIONS,
    PIPELINES,
    ColorJitter,
    Compose,
    GaussianBlur,
    HorizontalFlip,
    Normalize,
    RandomCrop,
    RandomGrayscale,
    RandomScale,
    Resize,
    ToTensor,
    denormalize,
    eval_transform,
    pipeline_transform,
    train_transform,
)


def _pair(h=16, w=32, seed=0):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    label = rng.choice(np.array([0, 5, 18, 255], dtype=np.uint8), size=(h, w))
    return image, label


@pytest.mark.parametrize("size", [(7, 13), (33, 65), (16, 16)])
def test_resize_is_nearest_on_labels(size):
    image, label = _pair()
    out_image, out_label = Resize(size)(image, label)
    assert out_image.size == size[::-1] and out_label.shape == size and out_label.dtype == np.uint8
    assert set(np.unique(out_label)) <= {0, 5, 18, 255}


def test_random_scale_keeps_ids_and_scales_both():
    torch.manual_seed(0)
    image, label = _pair()
    out_image, out_label = RandomScale(2.0, 3.0)(image, label)
    h, w = out_label.shape
    assert out_image.size == (w, h) and 32 <= h <= 48 and abs(w - 2 * h) <= 1  # same s for both sides
    assert set(np.unique(out_label)) <= {0, 5, 18, 255}


def test_crop_pads_image_with_0_and_label_with_255():
    image, label = _pair(4, 6)
    out_image, out_label = RandomCrop((8, 10))(image, label)
    out = np.asarray(out_image)
    assert out.shape == (8, 10, 3) and out_label.shape == (8, 10)
    np.testing.assert_array_equal(out_label[:4, :6], label)
    assert (out_label[4:] == 255).all() and (out_label[:, 6:] == 255).all()
    assert (out[4:] == 0).all() and (out[:, 6:] == 0).all()
    np.testing.assert_array_equal(out[:4, :6], np.asarray(image))


def test_crop_inside_keeps_image_and_label_aligned():
    torch.manual_seed(3)
    label = np.arange(16 * 32, dtype=np.int64).reshape(16, 32) % 251
    image = Image.fromarray(np.repeat(label[..., None], 3, axis=2).astype(np.uint8))
    out_image, out_label = RandomCrop((5, 7))(image, label.astype(np.uint8))
    np.testing.assert_array_equal(np.asarray(out_image)[..., 0], out_label)


def test_flip_moves_image_and_label_together():
    image, label = _pair()
    out_image, out_label = HorizontalFlip(p=1.0)(image, label)
    np.testing.assert_array_equal(out_label, label[:, ::-1])
    np.testing.assert_array_equal(np.asarray(out_image), np.asarray(image)[:, ::-1])
    assert HorizontalFlip(p=0.0)(image, label)[1] is label


def test_colour_transforms_leave_the_label_alone_and_are_seeded():
    image, label = _pair()
    aug = Compose([ColorJitter(0.5, 0.5, 0.5, 0.2), RandomGrayscale(1.0), GaussianBlur(3, (0.1, 2.0))])
    torch.manual_seed(0)
    a_image, a_label = aug(image, label)
    torch.manual_seed(0)
    b_image, _ = aug(image, label)
    assert a_label is label
    np.testing.assert_array_equal(np.asarray(a_image), np.asarray(b_image))
    gray = np.asarray(a_image)
    assert gray.shape == (16, 32, 3) and (gray[..., 0] == gray[..., 1]).all()


# a known pixel R=10, G=20, B=30 in each input convention (udalib.data.transforms.NORMALIZATIONS)
@pytest.mark.parametrize(
    "mode, expected",
    [
        ("caffe_bgr", [30 - 104.00698793, 20 - 116.66876762, 10 - 122.67891434]),
        ("imagenet_rgb", [(10 / 255 - 0.485) / 0.229, (20 / 255 - 0.456) / 0.224, (30 / 255 - 0.406) / 0.225]),
        ("vgg_bgr255", [30 - 103.939, 20 - 116.779, 10 - 123.68]),
    ],
)
def test_normalisation_of_a_known_pixel(mode, expected):
    image = Image.fromarray(np.array([[[10, 20, 30]]], dtype=np.uint8))
    x, y = Compose([ToTensor(), Normalize(mode)])(image, np.zeros((1, 1), np.uint8))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_allclose(x[:, 0, 0].numpy(), expected, atol=1e-4)
    np.testing.assert_array_equal(denormalize(x, mode), [[[10, 20, 30]]])


def test_normalize_rejects_unknown_modes():
    with pytest.raises(ValueError, match="caffe_bgr"):
        Normalize("bgr")
    assert set(NORMALIZATIONS) == {"caffe_bgr", "imagenet_rgb", "vgg_bgr255"}


def test_eval_transform_keeps_the_full_resolution_label():
    image, label = _pair(16, 32)
    x, y = eval_transform(size=(8, 16), normalization="caffe_bgr")(image, label)
    assert x.shape == (3, 8, 16)
    np.testing.assert_array_equal(y.numpy(), label)
    x, y = eval_transform(size=(8, 16), normalization="caffe_bgr", label_size="same")(image, label)
    assert y.shape == (8, 16)
    x, y = eval_transform(size=(8, 16), normalization="caffe_bgr", label_size=(4, 8))(image, label)
    assert y.shape == (4, 8)


def test_train_transform_presets():
    image, label = _pair(16, 32)
    x, y = train_transform(size=(8, 16), normalization="imagenet_rgb")(image, label)
    assert x.shape == (3, 8, 16) and y.shape == (8, 16)
    ssl = train_transform(
        size=None, normalization="imagenet_rgb", scale=(0.5, 1.5), crop=(12, 20), flip=True, color_aug=True
    )
    torch.manual_seed(1)
    x1, y1 = ssl(image, label)
    torch.manual_seed(1)
    x2, y2 = ssl(image, label)
    assert x1.shape == (3, 12, 20) and y1.shape == (12, 20)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert set(y1.unique().tolist()) <= {0, 5, 18, 255}
    names = [type(t).__name__ for t in ssl.transforms]
    assert names == [
        "RandomScale",
        "RandomCrop",
        "HorizontalFlip",
        "ColorJitter",
        "RandomGrayscale",
        "GaussianBlur",
        "ToTensor",
        "Normalize",
    ]
    with pytest.raises(ValueError, match="label_size"):
        train_transform(size=(8, 16), normalization="caffe_bgr", crop=(4, 4), label_size=(2, 2))
    with pytest.raises(ValueError, match="height, width"):
        Resize((8,))


@pytest.mark.parametrize(
    "name, steps",
    [
        ("none", ["Resize", "ToTensor", "Normalize"]),
        ("sdca_color", ["Resize", "ColorJitter", "RandomGrayscale", "GaussianBlur", "ToTensor", "Normalize"]),
        ("fda", ["Resize", "FourierStyle", "ToTensor", "Normalize"]),
        ("scale_crop", ["RandomScale", "RandomCrop", "HorizontalFlip", "ToTensor", "Normalize"]),
    ],
)
def test_each_named_pipeline_is_its_steps_at_the_training_size(name, steps):
    image, label = _pair(16, 32)
    tf = pipeline_transform(name, size=(8, 12), normalization="imagenet_rgb", fda_images=[_pair(4, 4)[0]])
    assert [type(t).__name__ for t in tf.transforms] == steps
    torch.manual_seed(0)
    x, y = tf(image, label)
    assert x.shape == (3, 8, 12) and y.shape == (8, 12)  # scale_crop crops at the training size


def test_an_unknown_pipeline_names_the_allowed_ones_and_fda_needs_images():
    with pytest.raises(ValueError, match="unknown data pipeline 'colour'; expected one of none, sdca_color, fda"):
        pipeline_transform("colour", size=(8, 8), normalization="imagenet_rgb")
    with pytest.raises(ValueError, match="target set is empty"):
        pipeline_transform("fda", size=(8, 8), normalization="imagenet_rgb")


def test_the_config_names_exactly_the_pipelines_that_exist():
    assert set(SOURCE_AUGS) | set(LABELLED_AUGS) == set(PIPELINES)


def test_a_bad_pipeline_in_the_config_names_the_parameter_and_the_allowed_values():
    with pytest.raises(ValueError, match="source_aug must be one of none, sdca_color, fda; got 'scale_crop'"):
        DataConfig(source_aug="scale_crop")
    with pytest.raises(ValueError, match="labelled_aug must be one of none, scale_crop; got 'fda'"):
        DataConfig(labelled="target", labelled_aug="fda")
    # a pipeline of the set that carries no labels would do nothing: refused
    with pytest.raises(ValueError, match="source_aug='sdca_color' needs labelled='source'"):
        DataConfig(labelled="target", source_aug="sdca_color")
    with pytest.raises(ValueError, match="labelled_aug='scale_crop' needs labelled='target'"):
        DataConfig(labelled_aug="scale_crop")


@pytest.mark.parametrize(
    "old, new",
    [
        ({"source_color_aug": True}, {"source_aug": "sdca_color"}),
        ({"source_fda_beta": 0.05}, {"source_aug": "fda", "fda_beta": 0.05}),
        ({"labelled": "target", "labelled_scale_crop": True}, {"labelled": "target", "labelled_aug": "scale_crop"}),
        ({"source_color_aug": False, "source_fda_beta": 0.0, "labelled_scale_crop": False}, {}),
    ],
)
def test_a_config_stored_with_the_former_flags_reads_as_their_pipeline(old, new):
    stored = RunConfig("quick", "sdca", DataConfig(), TrainConfig(), {}).to_dict()
    for flag in ("source_aug", "fda_beta", "labelled_aug"):
        del stored["data"][flag]
    stored["data"].update(old)
    assert RunConfig.from_dict(stored).data == DataConfig(**new)
