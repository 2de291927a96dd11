"""A run's segmenter: built from its config, or loaded from the checkpoint a run wrote (which stores its config).

Training, evaluation, pseudo-labelling, the stage cache, the CLI and the chapters all build and load models here::

    model = build_segmenter(cfg.train, num_classes=19)          # fresh, for training
    model = load_trained(cfg, device)                            # the run's final checkpoint, eval mode
    model, cfg = load_trained_with_config("run/checkpoint_0000500.pt", device)

A file that is not a usable udalib checkpoint (empty, truncated, text, another network, unsafe pickle) raises
:class:`~udalib.models.checkpoints.CheckpointError`, a ValueError whose one-line message names the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import RunConfig, TrainConfig
from . import build_model
from .checkpoints import CheckpointError, load_checkpoint_into, read_checkpoint

#: What the trainer's checkpoints hold (``udalib.train.Trainer.save_checkpoint``); resuming needs every key.
TRAINER_KEYS = ("step", "model", "optimizer", "aux_optimizers", "method", "scaler", "rng", "config", "num_classes")


def build_segmenter(train: TrainConfig, num_classes: int) -> nn.Module:
    """The segmenter `train` describes (backbone, heads, BN mode, pretrained weights)."""
    kw: dict[str, Any] = dict(pretrained=train.pretrained, aspp_bug_compat=train.aspp_bug_compat)
    if train.backbone != "vgg16":  # DeepLab VGG-16 is single-level and has no BN (AdaptSegNet's deeplab_vgg.py)
        kw["multi_level"] = train.multi_level
        kw["bn_mode"] = train.bn_mode
    return build_model(train.backbone, num_classes, **kw)


@contextmanager
def _naming(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a refusal of the checkpoint's contents (another network, class count, ...) as a CheckpointError
    naming the file."""
    try:
        yield
    except CheckpointError:
        raise
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err


def load_weights(model: nn.Module, path: str | os.PathLike, *, drop_heads: bool = False) -> None:
    """Load the segmenter of a udalib checkpoint into `model` (refusing another class count or architecture).

    `drop_heads` lets a multi-level checkpoint initialise a single-level model (its auxiliary head is dropped).
    """
    state = read_checkpoint(path)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: not a state dict: the checkpoint holds a {type(state).__name__}")
    with _naming(path):
        weights = state["model"] if "model" in state else state
        load_checkpoint_into(model, weights, source="udalib", drop_heads=drop_heads)


def load_trained_with_config(
    source: RunConfig | str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, RunConfig]:
    """The model of a udalib checkpoint, built from the config stored in it, on `device` in eval mode, and that
    config. `source` is a checkpoint file or a RunConfig (its final checkpoint)."""
    path = Path(source.final_checkpoint if isinstance(source, RunConfig) else source)
    state = read_checkpoint(path, require=("config", "model", "num_classes"))
    try:
        cfg = RunConfig.from_dict(json.loads(state["config"]))
        num_classes = int(state["num_classes"])
    except (TypeError, ValueError, KeyError) as err:  # JSON, fields of another udalib version, a bad value
        raise CheckpointError(
            f"{path}: its stored run config cannot be read ({type(err).__name__}: {err}); "
            "was it written by another udalib version?"
        ) from err
    # the trained weights replace every initial one, so none are read first
    model = build_segmenter(dataclasses.replace(cfg.train, pretrained=None), num_classes)
    with _naming(path):
        load_checkpoint_into(model, state["model"], source="udalib", verbose=False)
    return model.to(device).eval(), cfg


def load_trained(source: RunConfig | str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """:func:`load_trained_with_config` without the config."""
    return load_trained_with_config(source, device)[0]
