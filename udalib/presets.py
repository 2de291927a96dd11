"""What the two presets mean for every method, in one table: ``quick`` (CPU, SynthCity) and ``paper``.

A preset starts from a base (data, backbone, sizes, the supervised schedule) and each method's row changes what
that method needs: its schedule, batch, the stage it starts from, its weights. The weights in a method's config
dataclass are the paper's (``udalib/methods/<paper>.py``); a quick row changes them only by a rule written here,
with the reason. Overrides (papermill parameters, CLI flags) are applied by :func:`resolve`; ``None`` means "the
preset's value".
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from . import methods
from .config import DataConfig, RunConfig, TrainConfig, resolve_device
from .data import synthcity

PRESETS = ("quick", "paper")
DATASETS = ("synthcity", "gta5", "synthia")


@dataclass(frozen=True)
class Row:
    """What a preset changes for one method: fields of DataConfig, TrainConfig and the method's config, and
    factors that multiply fields of the method's config (a quick-mode scaling rule). ``a + b``: b wins."""

    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    method: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)

    def __add__(self, other: Row) -> Row:
        return Row(*({**getattr(self, f.name), **getattr(other, f.name)} for f in dataclasses.fields(Row)))


# -- the bases ---------------------------------------------------------------------------------------------------

#: paper: DeepLab-v2 ResNet-101 from ImageNet at 1280×720 source / 1024×512 target; every other value is the
#: seeds' and TrainConfig's default: batch 1+1, affine-frozen BN, LR 2.5e-4, AdaptSegNet's schedule (150k of a 250k
#: poly horizon), evaluation and checkpoints every 5,000 iterations (AdaptSegNet ``train_gta2cityscapes_multi.py``).
PAPER_TRAIN = TrainConfig(backbone="resnet101", pretrained="imagenet")

#: quick: what changes for a CPU and minutes.
QUICK_TRAIN = dataclasses.replace(
    PAPER_TRAIN,
    backbone="small",  # a 0.65 M-parameter dilated CNN at 64×128 input, 128×256 labels
    pretrained=None,  # from scratch: no weights to download
    bn_mode="trainable",  # a network trained from scratch trains its BN layers (statistics and affine)
    lr=0.01,  # from scratch, not fine-tuning ImageNet weights
    iters=1200,  # 1,200 iterations of batch 8 in about three minutes on two cores: every class is learnt
    poly_horizon=1920,  # the same stop/horizon ratio as AdaptSegNet's (0.625)
    batch_source=8,
    batch_target=8,
    eval_every=400,
    checkpoint_every=400,
    log_every=20,
    seed=0,
    amp="off",  # no autocast on the CPU
)

_PAPER_SIZES = dict(target_size=(512, 1024), eval_size=(512, 1024), normalization="imagenet_rgb", num_workers=4)
PAPER_DATA = {
    "gta5": DataConfig(
        source="gta5", target="cityscapes", protocol="cityscapes19", source_size=(720, 1280), **_PAPER_SIZES
    ),
    "synthia": DataConfig(
        source="synthia", target="cityscapes", protocol="synthia16", source_size=(760, 1280), **_PAPER_SIZES
    ),
    # SynthCity at the paper's resolution: a GPU-scale check without downloads
    "synthcity": DataConfig(source_size=(720, 1280), synthcity_size=(1024, 2048), **_PAPER_SIZES),
}

# -- building blocks of the rows ---------------------------------------------------------------------------------

#: Quick adaptation: a few hundred CPU iterations from the cached source-only model (the seeds adapt from a
#: source-pretrained network too), 4 source + 4 target images per iteration, LR halved for fine-tuning.
QUICK_ADAPT = Row(
    train=dict(
        init_checkpoint="stage:source_only", iters=200, poly_horizon=330, lr=0.005, batch_source=4, batch_target=4
    )
)
#: The quick scaling rule: 200 iterations instead of 120-150k, so the alignment terms are scaled up to move the
#: segmenter within that budget: adversarial weights ×10 with the discriminators' LR ×2, entropy weights ×100
#: (the entropy term's gradient is far smaller than a discriminator's).
QUICK_ADVERSARIAL = {"lambda_adv_aux": 10, "lambda_adv_main": 10, "lr_d": 2}
QUICK_ENTROPY = {"lambda_ent_aux": 100, "lambda_ent_main": 100}

SINGLE_LEVEL = Row(train=dict(multi_level=False))
ADAPTSEGNET_PAPER = Row(train=dict(iters=150_000, poly_horizon=250_000, aspp_bug_compat=False))  # its train script
ADVENT_PAPER = Row(train=dict(iters=120_000, poly_horizon=250_000))  # ADVENT domain_adaptation/config.py
TARGET_LABELS = Row(data=dict(labelled="target"))

# SDCA (train_with_ssl.sh, configs/*.yaml): iterations stop at 64% of the poly horizon; the global batch of 8 images is
# kept on one GPU by accumulation; R101 configs: torchvision ImageNet weights, RGB, one classifier head.
SDCA_PAPER = Row(data=dict(normalization="imagenet_rgb"), train=dict(multi_level=False, pretrained="imagenet"))
#: Stage 3 adds colour jitter/grayscale/blur on source and FADA's class-balanced source sampler, from stage 1.
SDCA_STAGE3 = Row(
    data=dict(source_aug="sdca_color", source_sampling="class_balanced"),
    train=dict(init_checkpoint="stage:sdca_source", multi_level=False),
)
#: Stage 4: a *fresh* network (no init checkpoint) on the stage-3 model's pseudo-labels, with random scale
#: 0.5-1.5 of the full image, crop at the training size and flip; evaluated at full resolution.
SDCA_SSL = TARGET_LABELS + Row(
    data=dict(pseudo_label_dir="stage:sdca", labelled_aug="scale_crop"), train=dict(multi_level=False)
)

#: BAFFT (its train_step1.py and train_step2.py defaults): single-level, batch 1+1. Step 1 trains 200k of a
#: 250k poly horizon; step 2 starts from it with its pseudo-labels for 205k iterations of a 300k horizon (the
#: released step 2 resumes step 1's iteration count, 95,001 of 300,000, which a fresh schedule replaces here).
BAFFT_STEP1_PAPER = SINGLE_LEVEL + Row(train=dict(iters=200_000, poly_horizon=250_000))
BAFFT_STEP2 = Row(data=dict(pseudo_label_dir="stage:bafft_step1"), train=dict(init_checkpoint="stage:bafft_step1"))
#: Quick: the banks hold about as many source pools as 5 quick iterations produce (the paper's fill in a few hundred
#: of 200,000), so their target terms start early in a 200-iteration run.
QUICK_BANKS = Row(method=dict(stuff_slots=20, thing_slots=50))

#: MaxSquare and orthogonal/clustered embeddings (UDAclustering tools/train_UDA.py): single-level from the
#: source-only model, batch 1+1, BN in train mode and trainable (released), 10 "epochs" of 2,476 target images
#: with the poly LR decaying to zero at the last one.
CLUSTERING_PAPER = SINGLE_LEVEL + Row(
    train=dict(init_checkpoint="stage:source_only", iters=24_760, poly_horizon=24_760, bn_mode="trainable")
)
#: The quick rule for MaxSquare's target loss, an entropy-like confidence term: the entropy weights' ×100. The
#: feature-space losses are not scaled (as SDCA's are not).
QUICK_TARGET_CONFIDENCE = {"lambda_target": 100}

# -- THE TABLE: every registered method, both presets ------------------------------------------------------------

TABLE: dict[str, dict[str, Row]] = {
    "source_only": {"quick": Row(), "paper": Row()},
    "oracle": {"quick": TARGET_LABELS, "paper": TARGET_LABELS},
    # AdaptSegNet (its train script): paper 150k/250k; quick adapts from the cached source-only model under the rule
    "adaptsegnet_single": {
        "quick": SINGLE_LEVEL + QUICK_ADAPT + Row(scale=QUICK_ADVERSARIAL),
        "paper": SINGLE_LEVEL + ADAPTSEGNET_PAPER,
    },
    "adaptsegnet_multi": {"quick": QUICK_ADAPT + Row(scale=QUICK_ADVERSARIAL), "paper": ADAPTSEGNET_PAPER},
    "adaptsegnet_ls": {
        "quick": SINGLE_LEVEL + QUICK_ADAPT + Row(scale=QUICK_ADVERSARIAL),
        "paper": SINGLE_LEVEL + ADAPTSEGNET_PAPER,
    },
    # ADVENT (advent/domain_adaptation/config.py): paper 120k/250k
    "minent": {"quick": QUICK_ADAPT + Row(scale=QUICK_ENTROPY), "paper": ADVENT_PAPER},
    "advent": {"quick": QUICK_ADAPT + Row(scale=QUICK_ADVERSARIAL), "paper": ADVENT_PAPER},
    # global-local (our reading): ADVENT's schedule; quick scores 512 random pixels per image in the local branch
    # (an unbiased estimate of the per-pixel mean; all pixels make a CPU step many times slower: the
    # globallocal_all_pixels ablation)
    "globallocal": {
        "quick": QUICK_ADAPT
        + Row(
            method=dict(local_pixels=512), scale={**QUICK_ADVERSARIAL, "lambda_local_aux": 10, "lambda_local_main": 10}
        ),
        "paper": ADVENT_PAPER,
    },
    "bafft_step1": {
        "quick": SINGLE_LEVEL + QUICK_ADAPT + QUICK_BANKS + Row(scale=QUICK_ADVERSARIAL),
        "paper": BAFFT_STEP1_PAPER,
    },
    "bafft": {
        "quick": SINGLE_LEVEL + QUICK_ADAPT + QUICK_BANKS + BAFFT_STEP2 + Row(scale=QUICK_ADVERSARIAL),
        "paper": BAFFT_STEP1_PAPER + BAFFT_STEP2 + Row(train=dict(iters=205_000, poly_horizon=300_000)),
    },
    "maxsquare": {"quick": SINGLE_LEVEL + QUICK_ADAPT + Row(scale=QUICK_TARGET_CONFIDENCE), "paper": CLUSTERING_PAPER},
    "maxsquare_iw": {
        "quick": SINGLE_LEVEL + QUICK_ADAPT + Row(scale=QUICK_TARGET_CONFIDENCE),
        "paper": CLUSTERING_PAPER,
    },
    "ortho_cluster": {
        "quick": SINGLE_LEVEL + QUICK_ADAPT + Row(scale=QUICK_TARGET_CONFIDENCE),
        "paper": CLUSTERING_PAPER,
    },
    # SDCA stage 1: paper 20k/31.25k, lr 5e-4, FrozenBN, 2 images x 4; quick: the quick source-only schedule
    "sdca_source": {
        "quick": SINGLE_LEVEL,
        "paper": SDCA_PAPER
        + Row(train=dict(iters=20_000, poly_horizon=31_250, lr=5e-4, bn_mode="frozen", batch_source=2, accum=4)),
    },
    # SDCA stage 3: paper 40k/62.5k, lr 2.5e-4, FrozenBN, 1 source + 1 target x 4; quick: the quick adaptation
    "sdca": {
        "quick": QUICK_ADAPT + SDCA_STAGE3,
        "paper": SDCA_STAGE3
        + SDCA_PAPER
        + Row(
            train=dict(
                iters=40_000, poly_horizon=62_500, lr=2.5e-4, bn_mode="frozen", batch_source=1, batch_target=1, accum=4
            )
        ),
    },
    # SDCA stage 4: paper 20k/31.25k, lr 5e-4, trainable BN over micro-batches of 2 (the official SyncBN over 8),
    # evaluated at Cityscapes' full 1024x2048; quick: a fresh network on the quick supervised schedule (as long as
    # the source-only model it is compared with), evaluated at SynthCity's 128x256
    "sdca_ssl": {
        "quick": SDCA_SSL + Row(data=dict(eval_size=(128, 256))),
        "paper": SDCA_SSL
        + SDCA_PAPER
        + Row(
            data=dict(eval_size=(1024, 2048)),
            train=dict(iters=20_000, poly_horizon=31_250, lr=5e-4, bn_mode="trainable", batch_source=2, accum=4),
        ),
    },
}


def _clustering_setting(cl: float, orth: float, sp: float, target: float, vgg: bool, iw: float = 0.2) -> dict:
    train = dict(head_lr_mult=1.0) if vgg else {}
    return {
        "ortho_cluster": Row(
            train=train,
            method=dict(lambda_cluster=cl, lambda_ortho=orth, lambda_sparse=sp, lambda_target=target, iw_ratio=iw),
        ),
        "maxsquare": Row(train=train, method=dict(lambda_target=target)),
        "maxsquare_iw": Row(train=train, method=dict(lambda_target=target, iw_ratio=iw)),
    }


#: Paper values that depend on the source dataset and the backbone: UDAclustering's README commands
#: for (GTA5 | SYNTHIA) × (ResNet-101 | VGG-16); the VGG classifier trains at
#: the backbone's LR (1×, not 10×). GTA5 / ResNet-101 is the method configs' defaults. The MaxSquare baselines take
#: the same target weight and IW ratio. Applied by :func:`resolve` to the paper preset, before any override.
_CLUSTERING_SETTINGS = {
    ("gta5", "vgg16"): _clustering_setting(1e-1, 2e-2, 2e-2, 2e-2, vgg=True),
    ("synthia", "resnet101"): _clustering_setting(2e-2, 1e-1, 1.0, 5e-2, vgg=False, iw=0.0),
    ("synthia", "vgg16"): _clustering_setting(5e-2, 5e-2, 2e-2, 1e-2, vgg=True),
}
PAPER_SETTINGS: dict[str, dict[tuple[str, str], Row]] = {
    method: {setting: rows[method] for setting, rows in _CLUSTERING_SETTINGS.items()}
    for method in ("ortho_cluster", "maxsquare", "maxsquare_iw")
}
#: BAFFT on SYNTHIA: the stuff classes' train ids in the 16-class protocol (no terrain).
_SYNTHIA_STUFF = Row(method=dict(stuff_classes=(0, 1, 2, 3, 4, 8, 9)))
PAPER_SETTINGS |= {
    m: {("synthia", b): _SYNTHIA_STUFF for b in ("resnet101", "vgg16")} for m in ("bafft_step1", "bafft")
}


def row(method: str, preset: str) -> Row:
    """The table's row of `method` under `preset`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {PRESETS}")
    methods.get(method)  # a clear error for an unknown name
    return TABLE[method][preset]


def _base(preset: str, dataset: str) -> tuple[DataConfig, TrainConfig]:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    if preset == "quick":
        if dataset != "synthcity":
            raise ValueError(
                f"preset 'quick' runs on the embedded SynthCity pair, not {dataset!r}; use preset='paper' for real data"
            )
        return DataConfig(), QUICK_TRAIN
    return PAPER_DATA[dataset], PAPER_TRAIN


def _method_config(paper: Any, r: Row) -> Any:
    scaled = {name: getattr(paper, name) * factor for name, factor in r.scale.items()}
    return dataclasses.replace(paper, **scaled, **r.method)


def resolve(
    method: str = "source_only",
    preset: str = "quick",
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    target_root: str | None = None,
    iters: int | None = None,
    backbone: str | None = None,
    seed: int | None = None,
    device: str | None = None,
    out_dir: str | None = None,
    resume: str | None = None,
    normalization: str | None = None,
    method_overrides: dict | None = None,
    data_overrides: dict | None = None,
    **train_overrides: Any,
) -> RunConfig:
    """Build the RunConfig of `method` under `preset`, with overrides (``None`` = keep the preset's value).

    `data_root` is the source root (for SynthCity: the folder holding ``source/`` and ``target/``);
    `target_root` the Cityscapes root for paper runs. The paper preset starts from torchvision's ImageNet weights,
    which expect ``normalization="imagenet_rgb"``; starting from the seeds' Caffe-converted DeepLab init
    (``pretrained=<path>``) needs ``normalization="caffe_bgr"``. Passing `iters` beyond the poly horizon moves the
    horizon to keep the seeds' stop/horizon ratio (0.6). `data_overrides` and `method_overrides` replace fields of
    the DataConfig and of the method's config (e.g. ``data_overrides={"synthcity_shift": (0, 1, 0, 0, 0)}``).
    """
    r = row(method, preset)
    data, train = _base(preset, dataset or ("synthcity" if preset == "quick" else "gta5"))
    if preset == "paper":  # the paper's own values for this source dataset and backbone, where they differ
        r = r + PAPER_SETTINGS.get(method, {}).get(
            (data.source, backbone or r.train.get("backbone", train.backbone)), Row()
        )
    data = dataclasses.replace(data, **r.data)
    train = dataclasses.replace(train, **r.train)
    mcfg = _method_config(methods.get(method).config, r)

    unknown_data = set(data_overrides or {}) - {f.name for f in dataclasses.fields(DataConfig)}
    if unknown_data:
        raise ValueError(f"unknown data parameter(s) {sorted(unknown_data)}; valid: {list(DataConfig.__annotations__)}")
    roots = dict(source_root=data_root, target_root=target_root, normalization=normalization)
    data = dataclasses.replace(data, **(data_overrides or {}), **{k: v for k, v in roots.items() if v is not None})
    if data.source == "synthcity" and data.source_root is None:
        data = dataclasses.replace(data, source_root=str(synthcity.cache_dir(data)))
    if data.target == "synthcity":
        data = dataclasses.replace(data, target_root=data.source_root)
    if preset == "paper" and data.target == "cityscapes" and (data.source_root is None or data.target_root is None):
        raise ValueError(
            "preset 'paper' on real data needs data_root (the GTA5/SYNTHIA folder) and target_root "
            "(the Cityscapes folder)"
        )

    overrides = {
        k: v
        for k, v in dict(iters=iters, backbone=backbone, seed=seed, device=device, **train_overrides).items()
        if v is not None
    }
    valid = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = set(overrides) - set(valid)
    if unknown:
        raise ValueError(f"unknown training parameter(s) {sorted(unknown)}; valid: {valid}")
    if isinstance(iters, int) and iters > overrides.get("poly_horizon", train.poly_horizon):
        overrides["poly_horizon"] = int(iters / 0.6)
    train = dataclasses.replace(train, **overrides)  # TrainConfig checks every value (types, ranges)
    if method_overrides:
        mcfg = dataclasses.replace(mcfg, **method_overrides)
    # UDABOOK_PAPER_ON_CPU=1 is a test-only switch: tests/test_paper_path.py runs every paper configuration for two
    # iterations at a tiny size on the CPU. It is not a way to train the paper preset on a CPU.
    on_cpu_for_tests = os.environ.get("UDABOOK_PAPER_ON_CPU") == "1"
    if preset == "paper" and resolve_device(train.device).type != "cuda" and not on_cpu_for_tests:
        raise RuntimeError(
            "preset 'paper' trains ResNet-101 at 1280x720 and needs CUDA; no CUDA device is "
            "available here. Use preset='quick' on a CPU."
        )
    return RunConfig(
        preset=preset,
        method=method,
        data=data,
        train=train,
        method_cfg=mcfg,
        out_dir=out_dir or f"runs/{preset}/{method}/seed{train.seed}",
        resume=resume,
    )
