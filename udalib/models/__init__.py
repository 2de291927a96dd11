"""Segmentation networks, domain discriminators and checkpoint loading.

Every segmenter returns a :class:`SegOutput` (logits, features, aux_logits at the network's
output stride) and offers ``parameter_groups()`` for the 10x head learning rate, so methods and
the trainer never reach into a model's layers. Build one with :func:`build_model`::

    model = build_model("resnet101", 19, pretrained="DeepLab_resnet_pretrained_init-f81d91e8.pth")
    model = build_model("small", 19)  # CPU quick mode
    model = build_model("small", 19, pretrained="procedural")  # its backbone from the shipped procedural weights
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from udalib.models.checkpoints import (
    LoadReport,
    describe_architecture,
    imagenet_checkpoint_path,
    load_checkpoint_into,
    procedural_checkpoint_path,
)
from udalib.models.deeplabv2 import (
    BN_MODES,
    DEEPLAB_ASPP_DILATIONS,
    ASPPClassifier,
    DeepLabSegmenter,
    DeepLabV2ResNet101,
)
from udalib.models.discriminators import PatchDiscriminator, PixelDiscriminator
from udalib.models.output import SegOutput
from udalib.models.small import SMALL_ASPP_DILATIONS, SmallDeepLab
from udalib.models.vgg import DeepLabVGG16

BACKBONES = ("resnet101", "vgg16", "small")
#: The backbones with BatchNorm: class, default BN mode (the seeds' for ResNet-101; a from-scratch CPU model trains
#: its BN), default ASPP rates.
_WITH_BN = {
    "resnet101": (DeepLabV2ResNet101, "affine_frozen", DEEPLAB_ASPP_DILATIONS),
    "small": (SmallDeepLab, "trainable", SMALL_ASPP_DILATIONS),
}


def build_model(
    backbone: str,
    num_classes: int,
    *,
    multi_level: bool | None = None,
    pretrained: str | os.PathLike | None = None,
    aspp_bug_compat: bool = False,
    bn_mode: str | None = None,
    aspp_dilations: Sequence[int] | None = None,
) -> DeepLabSegmenter:
    """Build a segmenter and optionally load weights into it.

    Args:
        backbone: ``"resnet101"`` (DeepLab-v2, ``ResNetMulti``), ``"vgg16"`` (``DeeplabVGG``,
            single-level, no BN) or ``"small"`` (CPU quick mode).
        num_classes: K (19 for GTA5/Cityscapes, 16 for SYNTHIA).
        multi_level: add the aux head on the penultimate stage. None: True, except for vgg16.
        pretrained: None (fresh init), ``"imagenet"`` (torchvision weights, only from the torch
            hub cache; nothing is downloaded), ``"procedural"`` (small only: the repository's backbone
            pretrained on procedural shapes and textures, checksum verified; the heads keep their init)
            or a checkpoint path (the seeds' DeepLab init or trained models, torchvision files, udalib
            checkpoints).
        aspp_bug_compat: AdaptSegNet's two-branch ASPP (``Classifier_Module.forward``).
        bn_mode: one of ``BN_MODES``. None: ``"affine_frozen"`` (the seeds) for resnet101,
            ``"trainable"`` for small; vgg16 has no BN and takes only None.
        aspp_dilations: ASPP rates. None: (6, 12, 18, 24), or (1, 2, 3, 4) for small.

    Raises:
        ValueError: unknown backbone or option that the backbone does not have.
        RuntimeError: ``pretrained="imagenet"`` and the weights are not in the torch hub cache.
        FileNotFoundError: ``pretrained`` names a file that does not exist.
        CheckpointError: ``pretrained="procedural"`` and the shipped file's checksum does not match its recipe.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; valid: {', '.join(BACKBONES)}")
    # Find the weights before building: a 44 M-parameter model is slow to build for nothing.
    if pretrained == "imagenet":
        weights: Path | None = imagenet_checkpoint_path(backbone)
    elif pretrained == "procedural":
        weights = procedural_checkpoint_path(backbone)
    elif pretrained is not None:
        weights = Path(pretrained)
        if not weights.is_file():
            raise FileNotFoundError(f"checkpoint not found: {weights}")
    else:
        weights = None

    if backbone == "vgg16":
        if multi_level or bn_mode is not None:
            raise ValueError(
                "vgg16 is single-level and has no BatchNorm (DeeplabVGG): leave multi_level and bn_mode unset"
            )
        model: DeepLabSegmenter = DeepLabVGG16(num_classes, aspp_bug_compat, aspp_dilations or DEEPLAB_ASPP_DILATIONS)
    else:
        cls, default_bn, default_dilations = _WITH_BN[backbone]
        model = cls(
            num_classes,
            multi_level=True if multi_level is None else multi_level,
            aspp_bug_compat=aspp_bug_compat,
            bn_mode=bn_mode or default_bn,
            aspp_dilations=aspp_dilations or default_dilations,
        )

    if weights is not None:
        source = "torchvision" if pretrained == "imagenet" else "auto"
        load_checkpoint_into(model, weights, source=source)
    return model


__all__ = [
    "ASPPClassifier",
    "BACKBONES",
    "BN_MODES",
    "DeepLabSegmenter",
    "DeepLabV2ResNet101",
    "DeepLabVGG16",
    "LoadReport",
    "PatchDiscriminator",
    "PixelDiscriminator",
    "SegOutput",
    "SmallDeepLab",
    "build_model",
    "describe_architecture",
    "imagenet_checkpoint_path",
    "load_checkpoint_into",
    "procedural_checkpoint_path",
]
