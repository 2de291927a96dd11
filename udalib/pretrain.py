"""Pretrain the quick backbone on procedural images: the repository's stand-in for ImageNet weights.

The paper's networks start from ImageNet; the quick preset's small network has no such weights and nothing may be
downloaded, so this trains its backbone (stem, layer1..layer4 of :class:`~udalib.models.small.SmallDeepLab`) on
:mod:`udalib.data.pretraining`'s textured shapes, a task that is neither SynthCity domain. Two dense heads share the
network's ASPP head (its K = 9 shape + 7 texture classes, one cross-entropy each); only the backbone is written, so a
segmenter built with ``pretrained="procedural"`` starts its own heads from their init, as from ImageNet.

The optimiser is the quick preset's from-scratch one (SGD, momentum 0.9, weight decay 5e-4, LR 0.01, poly 0.9) with
the heads at the base LR, the input normalisation its ``imagenet_rgb``. Beside the weights goes a JSON recipe: the
task, seed, schedule, torch version, threads, wall time, the accuracy on held-out procedural images, and the file's
SHA-256, which loading checks (:func:`udalib.models.checkpoints.verified_weights`)::

    udalib pretrain --out udalib/models/weights/small_procedural.pt --seed 0
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .data.pretraining import SHAPE_CLASSES, TEXTURES, ProceduralTask, procedural_batch
from .data.transforms import Normalize
from .evaluate import ConfusionMatrix
from .files import atomic_write, write_json
from .inference import upsample
from .losses.segmentation import seg_ce
from .models import build_model
from .models.checkpoints import recipe_path, sha256_file
from .train import poly_factor

#: The held-out images are drawn from this offset of the training seed: a stream the training batches never use.
HELD_OUT_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class PretrainRecipe:
    """Everything the weights are a function of (with the torch version; the recipe JSON stores it all)."""

    task: ProceduralTask = field(default_factory=ProceduralTask)
    iters: int = 6000
    batch: int = 16
    lr: float = 0.01
    head_lr_mult: float = 1.0  # the quick preset's x10 sent the first iterations' losses to 3-6 nats, then chance
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    normalization: str = "imagenet_rgb"
    seed: int = 0
    held_out_images: int = 512

    def __post_init__(self) -> None:
        for name in ("iters", "batch", "held_out_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        Normalize(self.normalization)  # a clear error for an unknown name


def pretraining_model(recipe: PretrainRecipe) -> nn.Module:
    """The small segmenter whose single ASPP head predicts the shape classes and then the texture classes."""
    classes = recipe.task.num_shape_classes + recipe.task.num_texture_classes
    return build_model("small", classes, multi_level=False, bn_mode="trainable")


def backbone_state(model: nn.Module) -> dict[str, Tensor]:
    """The model's state without its heads (what ImageNet weights would give): stem and layer1..layer4."""
    heads = tuple(f"{name}." for name in model.head_names)
    return {key: value.detach().clone() for key, value in model.state_dict().items() if not key.startswith(heads)}


def _inputs(images: Tensor, normalize: Normalize) -> Tensor:
    return torch.stack([normalize(image, None)[0] for image in images])  # Normalize takes one (3, H, W) image


def _losses(model: nn.Module, recipe: PretrainRecipe, batch: tuple[Tensor, Tensor, Tensor], normalize: Normalize):
    images, shapes, textures = batch
    logits = model(_inputs(images, normalize)).logits
    split = recipe.task.num_shape_classes
    return seg_ce(logits[:, :split], shapes), seg_ce(logits[:, split:], textures)


@torch.no_grad()
def held_out_accuracy(model: nn.Module, recipe: PretrainRecipe, batch: int = 32) -> dict:
    """Pixel accuracy and mIoU of both dense tasks on ``recipe.held_out_images`` images of a stream that training
    never draws from, and the share of the most frequent class (what predicting it everywhere scores)."""
    gen = torch.Generator().manual_seed(recipe.seed + HELD_OUT_SEED_OFFSET)
    normalize = Normalize(recipe.normalization)
    split = recipe.task.num_shape_classes
    shape_cm, texture_cm = ConfusionMatrix(split), ConfusionMatrix(recipe.task.num_texture_classes)
    was_training = model.training
    model.eval()
    left = recipe.held_out_images
    while left > 0:
        images, shapes, textures = procedural_batch(recipe.task, min(batch, left), gen)
        logits = upsample(model(_inputs(images, normalize)).logits, tuple(shapes.shape[-2:]))
        shape_cm.update(shapes, logits[:, :split].argmax(1))
        texture_cm.update(textures, logits[:, split:].argmax(1))
        left -= images.shape[0]
    model.train(was_training)
    return {name: _scores(cm, classes) for name, cm, classes in (
        ("shape", shape_cm, SHAPE_CLASSES), ("texture", texture_cm, TEXTURES)
    )}  # fmt: skip


def _scores(cm: ConfusionMatrix, classes: tuple[str, ...]) -> dict:
    mat = cm.mat.double()
    iou = cm.iou()
    return {
        "pixel_accuracy": cm.pixel_accuracy(),
        "miou": float(iou.mean()),
        "iou": {name: float(value) for name, value in zip(classes, iou, strict=True)},
        "majority_share": float(mat.sum(1).max() / mat.sum()),
    }


def pretrain(
    recipe: PretrainRecipe, out: str | os.PathLike, *, log_every: int = 100, say: Callable[[str], None] = print
) -> dict:
    """Train `recipe`, write the backbone to `out` and its recipe JSON beside it (:func:`recipe_path`); returns the
    recipe as written. The file is written only at the end, atomically, so an interrupted run leaves none."""
    out = Path(out)
    if out.suffix != ".pt":
        raise ValueError(f"out must be a .pt file (its recipe goes beside it as .json), got {out}")
    torch.manual_seed(recipe.seed)
    model = pretraining_model(recipe).train()
    groups = model.parameter_groups(recipe.head_lr_mult)
    optimizer = torch.optim.SGD(
        [{"params": g["params"], "lr": recipe.lr * g["lr_mult"]} for g in groups],
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    gen = torch.Generator().manual_seed(recipe.seed)
    normalize = Normalize(recipe.normalization)
    start = time.perf_counter()
    for step in range(recipe.iters):
        factor = poly_factor(step, recipe.iters, recipe.poly_power)
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor
        shape_loss, texture_loss = _losses(model, recipe, procedural_batch(recipe.task, recipe.batch, gen), normalize)
        optimizer.zero_grad(set_to_none=True)
        (shape_loss + texture_loss).backward()
        optimizer.step()
        if (step + 1) % log_every == 0 or step + 1 == recipe.iters:
            elapsed = time.perf_counter() - start
            say(
                f"pretrain {step + 1}/{recipe.iters}: shape CE {shape_loss.item():.3f}, texture CE "
                f"{texture_loss.item():.3f} ({elapsed / (step + 1):.3f} s/iter)"
            )
    train_seconds = time.perf_counter() - start
    scores = held_out_accuracy(model, recipe)
    atomic_write(out, lambda tmp: torch.save(backbone_state(model), tmp))
    written = {
        "weights": out.name,
        "what": "SmallDeepLab backbone (stem, layer1..layer4) pretrained on procedural shapes and textures",
        "recipe": dataclasses.asdict(recipe),
        "shape_classes": list(SHAPE_CLASSES),
        "texture_classes": list(TEXTURES),
        "held_out": scores,
        "train_seconds": round(train_seconds, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "sha256": sha256_file(out),
    }
    write_json(recipe_path(out), written)
    say(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {recipe_path(out).name}: held-out shape pixel "
        f"accuracy {scores['shape']['pixel_accuracy']:.3f} (mIoU {scores['shape']['miou']:.3f}), texture "
        f"{scores['texture']['pixel_accuracy']:.3f}, in {train_seconds / 60:.1f} min"
    )
    return written


__all__ = ["HELD_OUT_SEED_OFFSET", "PretrainRecipe", "backbone_state", "held_out_accuracy", "pretrain"]
