"""Run configuration and the two presets every chapter and the CLI share: ``quick`` (CPU, SynthCity) and ``paper``.

A preset fixes data, backbone, sizes and schedule; a method's own hyperparameters live in its config dataclass
(``udalib/methods/*.py``). Overrides (papermill parameters, CLI flags) are applied with `resolve(...)`; ``None``
means "the preset's value".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .models.output import FEATURE_CHANNELS

PRESETS = ("quick", "paper")
DATASETS = ("synthcity", "gta5", "synthia")


@dataclass(frozen=True)
class DataConfig:
    """Where the domains live and how images are sized. Sizes are (height, width)."""

    source: str = "synthcity"  # synthcity | gta5 | synthia (source domain, labelled)
    target: str = "synthcity"  # synthcity | cityscapes (target domain; val labels only for evaluation)
    source_root: str | None = None
    target_root: str | None = None
    protocol: str = "cityscapes19"  # cityscapes19 | synthia16
    source_size: tuple[int, int] = (64, 128)
    target_size: tuple[int, int] = (64, 128)
    eval_size: tuple[int, int] = (64, 128)  # network input at test time; labels stay at full resolution
    normalization: str = "imagenet_rgb"  # imagenet_rgb (torchvision weights) | caffe_bgr (seeds' DeepLab init) | vgg_bgr255
    synthcity_size: tuple[int, int] = (128, 256)  # generated resolution (quick) = full-resolution labels
    synthcity_counts: tuple[int, int, int] = (2000, 500, 200)  # source, target train, target val
    num_workers: int = 0
    source_color_aug: bool = False  # SDCA stage 3: colour jitter, grayscale, blur on source images
    source_sampling: str = "uniform"  # uniform | class_balanced (FADA/SDCA sampler)
    pseudo_label_dir: str | None = None  # target-train labels from pseudo-labels (self-training stage)
    labelled_scale_crop: bool = False  # SDCA self-training: random scale 0.5-1.5 of the full image, crop, flip


@dataclass(frozen=True)
class TrainConfig:
    """The segmenter, the optimiser and the schedule (spec §2.1, §3.3: SGD 0.9 / 5e-4, poly 0.9, heads ×10)."""

    backbone: str = "small"  # small | resnet101 | vgg16
    multi_level: bool = True
    pretrained: str | None = None  # None | "imagenet" | path to a checkpoint
    init_checkpoint: str | None = None  # a udalib checkpoint to start from (e.g. the source-only model)
    bn_mode: str = "affine_frozen"
    aspp_bug_compat: bool = False
    lr: float = 2.5e-4
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    iters: int = 150_000  # early stop (the seeds' NUM_STEPS_STOP)
    max_iters: int = 250_000  # poly horizon (the seeds' NUM_STEPS)
    batch_source: int = 1
    batch_target: int = 1
    accum: int = 1  # gradient accumulation (the seeds' ITER_SIZE)
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | fp16 | off
    channels_last: bool = True
    eval_every: int = 5000
    checkpoint_every: int = 5000
    log_every: int = 50
    seed: int = 1234
    device: str = "auto"


@dataclass(frozen=True)
class RunConfig:
    preset: str
    method: str
    data: DataConfig
    train: TrainConfig
    method_cfg: Any  # the method's frozen config dataclass
    out_dir: str = "runs/default"
    resume: str | None = None  # a checkpoint file, or "auto" = the latest in out_dir
    overwrite: bool = False  # allow starting a fresh run in an out_dir that already holds one

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["method_cfg"] = dataclasses.asdict(self.method_cfg) if dataclasses.is_dataclass(self.method_cfg) else None
        return d

    def describe(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=str)


def _quick(dataset: str) -> tuple[DataConfig, TrainConfig]:
    if dataset != "synthcity":
        raise ValueError(f"preset 'quick' runs on the embedded SynthCity pair, not {dataset!r}; "
                         "use preset='paper' for real data")
    data = DataConfig()
    # the small backbone trains from scratch, so its BN layers train (statistics and affine)
    train = TrainConfig(backbone="small", multi_level=True, bn_mode="trainable", lr=0.01, iters=500, max_iters=800,
                        batch_source=8, batch_target=8, eval_every=200, checkpoint_every=200, log_every=20, seed=0,
                        amp="off")
    return data, train


#: Quick-mode adaptation: a few hundred CPU iterations from the cached source-only model (the seeds adapt from a
#: source-pretrained network too), 4 source + 4 target images per iteration, LR halved for fine-tuning.
QUICK_ADAPTATION = {"init_checkpoint": "stage:source_only", "iters": 200, "max_iters": 330, "lr": 0.005,
                    "batch_source": 4, "batch_target": 4}


def _paper(dataset: str) -> tuple[DataConfig, TrainConfig]:
    if dataset == "gta5":
        data = DataConfig(source="gta5", target="cityscapes", protocol="cityscapes19", source_size=(720, 1280),
                          target_size=(512, 1024), eval_size=(512, 1024), normalization="imagenet_rgb", num_workers=4)
    elif dataset == "synthia":
        data = DataConfig(source="synthia", target="cityscapes", protocol="synthia16", source_size=(760, 1280),
                          target_size=(512, 1024), eval_size=(512, 1024), normalization="imagenet_rgb", num_workers=4)
    elif dataset == "synthcity":  # SynthCity at the paper's resolution: a GPU-scale check without downloads
        data = DataConfig(source="synthcity", target="synthcity", source_size=(720, 1280), target_size=(512, 1024),
                          eval_size=(512, 1024), normalization="imagenet_rgb", synthcity_size=(1024, 2048),
                          num_workers=4)
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    train = TrainConfig(backbone="resnet101", multi_level=True, pretrained="imagenet", bn_mode="affine_frozen",
                        lr=2.5e-4, iters=150_000, max_iters=250_000, batch_source=1, batch_target=1,
                        eval_every=5000, checkpoint_every=5000, log_every=50, seed=1234)
    return data, train


def resolve(method: str = "source_only", preset: str = "quick", *, dataset: str | None = None,
            data_root: str | None = None, target_root: str | None = None, iters: int | None = None,
            backbone: str | None = None, seed: int | None = None, device: str | None = None,
            out_dir: str | None = None, resume: str | None = None, normalization: str | None = None,
            method_overrides: dict | None = None, **train_overrides: Any) -> RunConfig:
    """Build the RunConfig of `method` under `preset`, with overrides (``None`` = keep the preset's value).

    `data_root` is the source root (for SynthCity: the folder holding ``source/`` and ``target/``);
    `target_root` the Cityscapes root for paper runs. The paper preset starts from torchvision's ImageNet weights,
    which expect ``normalization="imagenet_rgb"``; starting from the seeds' Caffe-converted DeepLab init
    (``pretrained=<path>``) needs ``normalization="caffe_bgr"``.
    """
    from .methods import method_config  # late import: methods import this module

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {PRESETS}")
    dataset = dataset or ("synthcity" if preset == "quick" else "gta5")
    data, train = _quick(dataset) if preset == "quick" else _paper(dataset)
    mcfg, method_data, method_train = method_config(method, preset, dataset)
    data = dataclasses.replace(data, **method_data)
    train = dataclasses.replace(train, **method_train)
    if data_root is not None:
        data = dataclasses.replace(data, source_root=data_root)
    if target_root is not None:
        data = dataclasses.replace(data, target_root=target_root)
    if normalization is not None:
        data = dataclasses.replace(data, normalization=normalization)
    if data.source == "synthcity" and data.source_root is None:
        data = dataclasses.replace(data, source_root=str(synthcity_cache_dir(data)))
    if data.target == "synthcity":
        data = dataclasses.replace(data, target_root=data.source_root)
    if preset == "paper" and data.target == "cityscapes" and (data.source_root is None or data.target_root is None):
        raise ValueError("preset 'paper' on real data needs data_root (the GTA5/SYNTHIA folder) and target_root "
                         "(the Cityscapes folder)")
    overrides = {k: v for k, v in dict(iters=iters, backbone=backbone, seed=seed, device=device,
                                       **train_overrides).items() if v is not None}
    unknown = set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown training parameter(s) {sorted(unknown)}; valid: "
                         f"{[f.name for f in dataclasses.fields(TrainConfig)]}")
    train = dataclasses.replace(train, **overrides)
    if iters is not None and train.max_iters < iters:
        train = dataclasses.replace(train, max_iters=int(iters / 0.6))  # keep the seeds' stop/horizon ratio
    if "feature_dim" in {f.name for f in dataclasses.fields(mcfg)}:  # feature-level losses size their state
        mcfg = dataclasses.replace(mcfg, feature_dim=FEATURE_CHANNELS[train.backbone])
    if method_overrides:
        mcfg = dataclasses.replace(mcfg, **method_overrides)
    if preset == "paper" and resolve_device(train.device).type != "cuda":
        raise RuntimeError("preset 'paper' trains ResNet-101 at 1280x720 and needs CUDA; no CUDA device is "
                           "available here. Use preset='quick' on a CPU.")
    return RunConfig(preset=preset, method=method, data=data, train=train, method_cfg=mcfg,
                     out_dir=out_dir or f"runs/{preset}/{method}/seed{train.seed}", resume=resume)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cache_root() -> Path:
    """The shared cache (SynthCity sets, source-only checkpoints): $UDABOOK_CACHE or ~/.cache/udabook."""
    return Path(os.environ.get("UDABOOK_CACHE", Path.home() / ".cache" / "udabook"))


def _key(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def synthcity_cache_dir(data: DataConfig) -> Path:
    from .data.synthcity import VERSION

    h, w = data.synthcity_size
    return cache_root() / f"synthcity-{h}x{w}-{_key([VERSION, data.synthcity_size, data.synthcity_counts])}"
