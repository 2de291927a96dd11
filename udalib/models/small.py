"""A small dilated residual segmenter of the DeepLab-v2 family, for the CPU quick mode.

Same anatomy as :class:`udalib.models.deeplabv2.DeepLabV2ResNet101` (residual stages, later
stages dilated instead of strided, summed ASPP heads on the last two stages, backbone features
returned for feature-level losses), shrunk so that a 2-core CPU trains it at 64x128:

    stem (3x3/2 conv)  -> layer1 (stride 2)  -> layer2  -> layer3 (dilation 2) -> layer4 (dilation 4)
    stride 2              stride 4              stride 4    stride 4              stride 4

Example::

    model = SmallDeepLab(num_classes=19)
    out = model(torch.randn(8, 3, 64, 128))
    out.logits.shape      # (8, 19, 16, 32)
    out.aux_logits.shape  # (8, 19, 16, 32), from layer3
    out.features.shape    # (8, 128, 16, 32)
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from udalib.models.deeplabv2 import DeepLabSegmenter
from udalib.models.output import SegOutput

#: ASPP rates for stride-4 maps of 16x32: the paper's (6, 12, 18, 24) would look past the border.
SMALL_ASPP_DILATIONS = (1, 2, 3, 4)


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """Two-conv residual block (He et al., CVPR 2016) with optional dilation.

    ``y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; the shortcut is a 1x1 conv + BN
    when the stride or the width changes. (B, C_in, H, W) -> (B, C_out, ceil(H/s), ceil(W/s)).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class SmallDeepLab(DeepLabSegmenter):
    """Small DeepLab-v2-like segmenter at output stride 4 (about 0.65 M parameters for K=19).

    Input (B, 3, H, W) -> SegOutput with logits/aux_logits (B, K, H/4, W/4) and features
    (B, channels[3], H/4, W/4). Module names mirror the ResNet-101 model (layer1..4, aux head
    ``layer5`` on layer3, main head ``layer6`` on layer4). The quick preset trains it from scratch,
    so BN is trainable by default and convs use Kaiming init; ``build_model("small", K, pretrained="procedural")``
    starts its backbone from the weights :mod:`udalib.pretrain` wrote instead.

    Args:
        num_classes: K.
        multi_level: build the layer3 head and return ``aux_logits``.
        aspp_bug_compat: sum only the first two ASPP branches (AdaptSegNet's quirk).
        bn_mode: one of ``BN_MODES``, default ``"trainable"``.
        aspp_dilations: ASPP rates, default (1, 2, 3, 4) for the small maps.
        channels: widths of layer1..layer4.
    """

    arch = "small"
    head_names = ("layer5", "layer6")

    def __init__(
        self,
        num_classes: int,
        multi_level: bool = True,
        aspp_bug_compat: bool = False,
        bn_mode: str = "trainable",
        aspp_dilations: Sequence[int] = SMALL_ASPP_DILATIONS,
        channels: Sequence[int] = (32, 64, 96, 128),
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.stem = _conv_bn_relu(3, c1, stride=2)
        self.layer1 = BasicBlock(c1, c1, stride=2)
        self.layer2 = BasicBlock(c1, c2)
        self.layer3 = BasicBlock(c2, c3, dilation=2)
        self.layer4 = BasicBlock(c3, c4, dilation=4)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._add_heads(num_classes, (c3, c4), multi_level, aspp_dilations, aspp_bug_compat)
        self._apply_bn_mode(bn_mode)

    def forward(self, x: Tensor) -> SegOutput:
        x = self.layer2(self.layer1(self.stem(x)))  # (B, c2, H/4, W/4)
        c3 = self.layer3(x)  # (B, c3, H/4, W/4)
        return self._outputs(c3, self.layer4(c3))  # layer4: (B, c4, H/4, W/4)


__all__ = ["SMALL_ASPP_DILATIONS", "SmallDeepLab"]
