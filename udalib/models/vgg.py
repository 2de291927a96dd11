"""DeepLab VGG-16 (DeepLab-LargeFOV style; Chen et al., TPAMI 2018), single-level.

The VGG-16 segmenter of AdaptSegNet (``model/deeplab_vgg.py:DeeplabVGG``), FADA/SDCA
(``core/models/vgg.py``) and BAFFT's clustering baseline. Example::

    model = DeepLabVGG16(num_classes=19)
    out = model(torch.randn(1, 3, 512, 1024))
    out.logits.shape    # (1, 19, 64, 128)
    out.features.shape  # (1, 1024, 64, 128), the fc7 output
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from udalib.models.deeplabv2 import DEEPLAB_ASPP_DILATIONS, ASPPClassifier, DeepLabSegmenter
from udalib.models.output import SegOutput

# torchvision's VGG-16 configuration "D" with pool4 and pool5 removed: "M" is a 2x2/2 max-pool,
# (channels, dilation) a 3x3 conv + ReLU. Three pools remain, so the output stride is 8, and the
# conv5 block is dilated by 2 to keep the receptive field pool4 would have given it.
_VGG16_LAYOUT: list[str | tuple[int, int]] = [
    (64, 1), (64, 1), "M",
    (128, 1), (128, 1), "M",
    (256, 1), (256, 1), (256, 1), "M",
    (512, 1), (512, 1), (512, 1),
    (512, 2), (512, 2), (512, 2),
]  # fmt: skip

#: Indices in torchvision's ``vgg16().features`` -> indices in ours (pool4 at 23 is gone).
TORCHVISION_FEATURE_INDEX = {i: i for i in range(23)} | {24: 23, 26: 25, 28: 27}
#: fc6 and fc7: DeepLab's new convs, which ImageNet VGG files do not have.
FC6_FC7_PREFIXES = ("features.29.", "features.31.")


def _vgg16_features() -> nn.Sequential:
    """conv1_1..conv5_3, then fc6 and fc7 as dilated 3x3 convs (1024 channels, dilation 4)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in _VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        channels, dilation = item
        layers += [
            nn.Conv2d(in_channels, channels, kernel_size=3, padding=dilation, dilation=dilation),
            nn.ReLU(inplace=True),
        ]
        in_channels = channels
    for module in layers:
        # torchvision's VGG init, which the seeds start from before loading ImageNet weights;
        # DeepLab's N(0, 0.01) would make a 15-conv network without BN vanish.
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    # fc6/fc7 keep PyTorch's default init, as in AdaptSegNet and FADA.
    layers += [
        nn.Conv2d(512, 1024, kernel_size=3, padding=4, dilation=4),  # fc6
        nn.ReLU(inplace=True),
        nn.Conv2d(1024, 1024, kernel_size=3, padding=4, dilation=4),  # fc7
        nn.ReLU(inplace=True),
    ]
    return nn.Sequential(*layers)


class DeepLabVGG16(DeepLabSegmenter):
    """DeepLab VGG-16 at output stride 8 with an ASPP head on the 1024-channel fc7 output.

    Input (B, 3, H, W) -> SegOutput with logits (B, K, H//8, W//8), features (B, 1024, H//8,
    W//8) = fc7 after ReLU, and ``aux_logits=None`` (single-level, as in every seed).

    Module names follow AdaptSegNet's ``DeeplabVGG`` (``features.{i}``, ``classifier``), so its
    released VGG model loads as is; torchvision ``features.N`` keys are re-indexed by
    :mod:`udalib.models.checkpoints`. fc6/fc7 belong to the backbone parameter group. There is no
    BatchNorm. Note that AdaptSegNet and BAFFT train the VGG head at 1x LR:
    ``parameter_groups(head_lr_mult=1.0)``.
    """

    arch = "vgg16"
    feature_channels = 1024
    head_names = ("classifier",)

    def __init__(
        self,
        num_classes: int,
        aspp_bug_compat: bool = False,
        aspp_dilations: Sequence[int] = DEEPLAB_ASPP_DILATIONS,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = _vgg16_features()
        self.classifier = ASPPClassifier(1024, num_classes, aspp_dilations, aspp_bug_compat)

    def forward(self, x: Tensor) -> SegOutput:
        features = self.features(x)  # (B, 1024, H/8, W/8)
        return SegOutput(logits=self.classifier(features), features=features)


__all__ = ["DeepLabVGG16", "FC6_FC7_PREFIXES", "TORCHVISION_FEATURE_INDEX"]
