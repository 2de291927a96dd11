"""The procedural pretraining task, its recipe at tiny size, and loading the shipped weights with their checksum."""

from __future__ import annotations

import json

import pytest
import torch

from udalib import cli, presets
from udalib.config import TrainConfig
from udalib.data.pretraining import SHAPE_CLASSES, SHAPES, TEXTURES, ProceduralTask, _shape_mask, procedural_batch
from udalib.models import build_model
from udalib.models.checkpoints import (
    CheckpointError,
    procedural_checkpoint_path,
    read_checkpoint,
    recipe_path,
    sha256_file,
    verified_weights,
)
from udalib.pretrain import PretrainRecipe, pretrain

TINY = PretrainRecipe(
    task=ProceduralTask(size=(16, 32), shapes_per_image=(1, 2)), iters=3, batch=2, held_out_images=4, seed=5
)


def test_a_batch_is_a_function_of_the_generator_and_its_labels_cover_every_class():
    task = ProceduralTask()
    images, shapes, textures = procedural_batch(task, 32, torch.Generator().manual_seed(3))
    again = procedural_batch(task, 32, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip((images, shapes, textures), again, strict=True))
    assert images.shape == (32, 3, 64, 128) and shapes.shape == textures.shape == (32, 64, 128)
    assert 0 <= images.min() and images.max() <= 1
    assert set(shapes.unique().tolist()) == set(range(len(SHAPE_CLASSES)))
    assert set(textures.unique().tolist()) == set(range(len(TEXTURES)))


def test_shape_masks_in_the_shapes_own_frame():
    def inside(name: str, u: float, v: float) -> bool:
        return bool(_shape_mask(SHAPES.index(name), torch.tensor([u]), torch.tensor([v])))

    assert inside("disk", 0.0, 0.0) and inside("disk", 0.99, 0.0) and not inside("disk", 0.8, 0.8)
    assert not inside("ring", 0.0, 0.0) and inside("ring", 0.8, 0.0)
    assert inside("square", 0.8, 0.8) and not inside("square", 0.9, 0.0)
    assert inside("cross", 0.9, 0.0) and not inside("cross", 0.5, 0.5)
    assert inside("bar", 1.2, 0.0) and not inside("bar", 0.0, 0.5)
    assert not inside("crescent", 0.6, 0.0) and inside("crescent", -0.6, 0.0)
    # the star's points lie at angles 0, 72°, ...: r < 0.55 + 0.45 cos(5 phi), 1.0 on a point, 0.1 between two
    assert inside("star", 0.95, 0.0) and not inside("star", -0.5, 0.0)
    # the triangle (circumradius 1.2) reaches 1.2 at a vertex (phi = 0) and 0.6 at the middle of a side (phi = 60°)
    assert inside("triangle", 1.15, 0.0) and not inside("triangle", 1.25, 0.0)
    assert inside("triangle", 0.55 * 0.5, 0.55 * 3**0.5 / 2) and not inside("triangle", 0.65 * 0.5, 0.65 * 3**0.5 / 2)


def test_bad_task_parameters_are_refused_by_name():
    with pytest.raises(ValueError, match="shapes_per_image"):
        ProceduralTask(shapes_per_image=(3, 2))
    with pytest.raises(ValueError, match="radius"):
        ProceduralTask(radius=(0.0, 0.3))
    with pytest.raises(ValueError, match="iters"):
        PretrainRecipe(iters=0)


def test_the_recipe_at_tiny_size_writes_a_loadable_backbone_with_its_checksum(tmp_path):
    out = tmp_path / "tiny.pt"
    written = pretrain(TINY, out, log_every=1, say=lambda line: None)
    recipe = json.loads(recipe_path(out).read_text())
    assert recipe == json.loads(json.dumps(written))
    assert recipe["sha256"] == sha256_file(out) and verified_weights(out) == out
    assert recipe["recipe"]["iters"] == 3 and recipe["recipe"]["seed"] == 5 and recipe["torch"] == torch.__version__
    for task in ("shape", "texture"):
        assert 0 <= recipe["held_out"][task]["pixel_accuracy"] <= 1
    state = read_checkpoint(out)
    assert state and all(key.startswith(("stem.", "layer1.", "layer2.", "layer3.", "layer4.")) for key in state)
    model = build_model("small", 19, pretrained=out)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())


def test_the_cli_runs_the_recipe(tmp_path):
    out = tmp_path / "cli.pt"
    argv = ["pretrain", "--out", str(out), "--iters", "2", "--batch", "2", "--size", "16", "32", "--held-out", "2"]
    assert cli.main(argv) == 0
    recipe = json.loads(recipe_path(out).read_text())
    assert recipe["recipe"]["task"]["size"] == [16, 32] and recipe["recipe"]["iters"] == 2
    assert cli.build_parser().parse_args(["train", "--pretrained", "procedural"]).pretrained == "procedural"


def test_a_checksum_that_does_not_match_is_refused_naming_the_file(tmp_path):
    out = tmp_path / "tiny.pt"
    pretrain(TINY, out, say=lambda line: None)
    recipe = json.loads(recipe_path(out).read_text())
    recipe["sha256"] = "0" * 64
    recipe_path(out).write_text(json.dumps(recipe))
    with pytest.raises(CheckpointError, match=r"checksum mismatch for .*tiny\.pt"):
        verified_weights(out)
    recipe_path(out).unlink()
    with pytest.raises(FileNotFoundError, match=r"tiny\.json"):
        verified_weights(out)


def test_procedural_weights_fill_the_backbone_and_leave_the_heads_at_their_init():
    shipped = read_checkpoint(procedural_checkpoint_path("small"))
    torch.manual_seed(0)
    fresh = build_model("small", 19).state_dict()
    torch.manual_seed(0)
    loaded = build_model("small", 19, pretrained="procedural").state_dict()
    assert set(shipped) == {key for key in loaded if not key.startswith(("layer5.", "layer6."))}
    assert all(torch.equal(loaded[key], value) for key, value in shipped.items())
    heads = [key for key in loaded if key.startswith(("layer5.", "layer6."))]
    assert heads and all(torch.equal(loaded[key], fresh[key]) for key in heads)
    assert not torch.equal(loaded["layer4.conv1.weight"], fresh["layer4.conv1.weight"])


def test_procedural_is_an_option_of_the_small_backbone_only_and_the_presets_keep_their_init():
    assert TrainConfig(backbone="small", pretrained="procedural").pretrained == "procedural"
    with pytest.raises(ValueError, match="pretrained='procedural' exists for backbone small, not 'resnet101'"):
        TrainConfig(backbone="resnet101", pretrained="procedural")
    with pytest.raises(ValueError, match="pretrained='imagenet' exists for backbone resnet101 or vgg16"):
        TrainConfig(backbone="small", pretrained="imagenet")
    assert presets.resolve("source_only", "quick", pretrained="procedural").train.pretrained == "procedural"
    assert presets.resolve("source_only", "quick").train.pretrained is None
    assert presets.PAPER_TRAIN.pretrained == "imagenet"
