"""DeepLab-v2 (Chen et al., TPAMI 2018) with a ResNet-101 backbone, as the UDA seeds build it.

This is the "ResNetMulti" network of AdaptSegNet (Tsai et al., CVPR 2018) and ADVENT
(Vu et al., CVPR 2019): ``model/deeplab_multi.py:ResNetMulti``. The module also holds
the pieces every udalib segmenter shares: the ASPP classifier, the BatchNorm modes and the
parameter groups with the 10x head learning rate. The book's source-only chapter introduces them.

Example::

    model = DeepLabV2ResNet101(num_classes=19)
    out = model(torch.randn(1, 3, 512, 1024))
    out.logits.shape      # (1, 19, 65, 129)
    out.aux_logits.shape  # (1, 19, 65, 129), from layer3
    out.features.shape    # (1, 2048, 65, 129)
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from udalib.models.output import SegOutput

# How BatchNorm behaves (the seeds train in .train() mode, ``train_gta2cityscapes_multi.py``):
#   "affine_frozen": gamma/beta get no gradient, but BN normalises with batch statistics and
#                    updates its running statistics in train mode. This is what the seeds do.
#   "frozen":        BN always runs in eval mode (running statistics, never updated) and gets no
#                    gradient, like FADA/SDCA's FrozenBatchNorm2d (``core/models/layers.py``).
#   "trainable":     ordinary BatchNorm (SDCA's SSL stage, the small CPU model).
BN_MODES = ("affine_frozen", "frozen", "trainable")

#: The DeepLab-v2 ASPP rates for stride-8 feature maps.
DEEPLAB_ASPP_DILATIONS = (6, 12, 18, 24)


class ASPPClassifier(nn.Module):
    """DeepLab-v2 atrous spatial pyramid pooling head ("Classifier_Module" in the seeds).

    ``y = sum_i conv3x3_{d_i}(x)`` for dilation rates d_i (padding = d_i, so H x W is kept):
    the branches are summed, with no concatenation, BN or ReLU (Chen et al., TPAMI 2018, Fig. 4).
    Weights start from N(0, 0.01); biases keep PyTorch's default init, as in the seeds.

    Shapes: (B, C_in, h, w) -> (B, num_classes, h, w).

    ``bug_compat=True`` reproduces AdaptSegNet's early ``return`` inside the summation loop:
    only the first two branches (d=6 and d=12) are summed (``Classifier_Module.forward``). The other branches
    stay as parameters so that official checkpoints load, but they are frozen because they
    never run and so could never receive a gradient.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dilations: Sequence[int] = DEEPLAB_ASPP_DILATIONS,
        bug_compat: bool = False,
    ) -> None:
        super().__init__()
        if bug_compat and len(dilations) < 2:
            raise ValueError("aspp_bug_compat needs at least two ASPP branches")
        # The name `conv2d_list` matches the seeds' state_dict keys.
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=d, dilation=d, bias=True) for d in dilations
        )
        for conv in self.conv2d_list:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
        self.num_active = 2 if bug_compat else len(dilations)
        for conv in self.conv2d_list[self.num_active :]:
            conv.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2d_list[0](x)
        for conv in self.conv2d_list[1 : self.num_active]:
            out = out + conv(x)
        return out


def batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of `module` (the private base class also matches SyncBatchNorm, after DDP's
    ``convert_sync_batchnorm``)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class DeepLabSegmenter(nn.Module):
    """Behaviour shared by the udalib segmenters: BN mode, parameter groups, architecture name.

    Subclasses set ``arch`` (checkpoint checks name it in their errors), ``num_classes``,
    ``feature_channels`` (A, the channels of ``SegOutput.features``) and ``head_names`` (the ASPP
    classifiers, trained at 10x LR); the DeepLab-v2 ones build their heads with :meth:`_add_heads`
    (which sets the first two) and call :meth:`_apply_bn_mode` once their layers exist (``bn_mode``
    stays None without BatchNorm).
    """

    arch: str
    num_classes: int
    feature_channels: int
    head_names: tuple[str, ...]
    bn_mode: str | None = None

    def _add_heads(
        self, num_classes: int, channels: tuple[int, int], multi_level: bool, dilations: Sequence[int], bug_compat: bool
    ) -> None:
        """The ASPP classifiers (10x LR): ``layer5`` on the penultimate stage (multi-level only), ``layer6`` on the
        last one, whose input is the model's ``features``; `channels` = (penultimate, last) stage widths."""
        self.num_classes, self.multi_level, self.feature_channels = num_classes, multi_level, channels[1]
        self.layer5 = ASPPClassifier(channels[0], num_classes, dilations, bug_compat) if multi_level else None
        self.layer6 = ASPPClassifier(channels[1], num_classes, dilations, bug_compat)

    def _outputs(self, c3: Tensor, c4: Tensor) -> SegOutput:
        """Heads on the penultimate (c3) and last (c4) stage outputs."""
        aux = self.layer5(c3) if self.layer5 is not None else None
        return SegOutput(logits=self.layer6(c4), features=c4, aux_logits=aux)

    @property
    def main_head(self) -> nn.Module:
        """The classifier that turns ``features`` into ``logits`` (BAFFT asks it about pooled feature vectors)."""
        return getattr(self, self.head_names[-1])

    def _apply_bn_mode(self, bn_mode: str) -> None:
        self.bn_mode = bn_mode
        if self.bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, got {self.bn_mode!r}")
        for bn in batchnorms(self):
            bn.requires_grad_(self.bn_mode == "trainable")
        self.train(self.training)

    def train(self, mode: bool = True) -> DeepLabSegmenter:
        """Like ``nn.Module.train``, except that ``bn_mode="frozen"`` keeps every BN in eval mode."""
        super().train(mode)
        if self.bn_mode == "frozen":
            for bn in batchnorms(self):
                bn.eval()
        return self

    def parameter_groups(self, head_lr_mult: float = 10.0) -> list[dict]:
        """Optimizer groups: ``[{backbone, lr_mult 1}, {ASPP heads, lr_mult head_lr_mult}]``.

        Only parameters with ``requires_grad`` are listed, so frozen BN affines are left out, as
        in the seeds' ``optim_parameters``. The seeds' ResNet heads use 10x the base
        LR; AdaptSegNet's and BAFFT's VGG-16 use 1x (pass ``head_lr_mult=1.0``).
        """
        backbone, heads = [], []
        for name, param in self.named_parameters():
            if param.requires_grad:
                is_head = name.split(".", 1)[0] in self.head_names
                (heads if is_head else backbone).append(param)
        return [
            {"params": backbone, "lr_mult": 1.0},
            {"params": heads, "lr_mult": head_lr_mult},
        ]


class Bottleneck(nn.Module):
    """Caffe-style ResNet bottleneck of DeepLab-v2 (He et al., CVPR 2016; Chen et al., TPAMI 2018).

    ``y = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))`` with
    conv1 1x1 (carries the stride, unlike torchvision which strides the 3x3), conv2 3x3 with
    dilation d and padding d, conv3 1x1 expanding to 4 * planes. All convs have no bias.

    Shapes: (B, C_in, H, W) -> (B, 4 * planes, ceil(H / stride), ceil(W / stride)).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        # Out of place: under autocast the two sides can differ in dtype.
        return self.relu(out + shortcut)


def _make_layer(in_channels: int, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """One ResNet stage; the projection shortcut rule is the seeds' (``ResNetMulti._make_layer``)."""
    out_channels = planes * Bottleneck.expansion
    downsample = None
    # The seeds' rule. The dilation clause never decides anything at ResNet-101's widths (the
    # first block of layers 3 and 4 changes width anyway); it is kept so the code reads as ``_make_layer``.
    if stride != 1 or in_channels != out_channels or dilation in (2, 4):
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    layers = [Bottleneck(in_channels, planes, stride, dilation, downsample)]
    layers += [Bottleneck(out_channels, planes, dilation=dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class DeepLabV2ResNet101(DeepLabSegmenter):
    """DeepLab-v2 ResNet-101 at output stride 8, optionally multi-level (``deeplab_multi.py:ResNetMulti``).

    stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool with ceil_mode) -> layer1 -> layer2 (stride 2)
    -> layer3 (dilation 2) -> layer4 (dilation 4) -> ``layer6`` = ASPP (main head).
    With ``multi_level`` an auxiliary ASPP ``layer5`` reads layer3 (1024 channels), as in
    AdaptSegNet's multi-level adaptation (Tsai et al., CVPR 2018, Sec. 3.3).

    Input (B, 3, H, W) -> SegOutput with logits/aux_logits (B, K, h, w) and features
    (B, 2048, h, w), where h = floor(ceil((ceil(H/2) - 1) / 2) / 2) + 1, about H/8 + 1
    (512x1024 -> 65x129, 720x1280 -> 91x161). Logits are not upsampled.

    Module names follow the seeds' state_dict keys (conv1, bn1, layer1..4, layer5, layer6), so
    official checkpoints load after stripping a prefix (see :mod:`udalib.models.checkpoints`).
    Every conv starts from N(0, 0.01) and every BN from gamma=1, beta=0, as in the seeds before
    they copy pretrained weights over.

    Args:
        num_classes: K.
        multi_level: build the layer3 head and return ``aux_logits``.
        aspp_bug_compat: sum only the d=6 and d=12 ASPP branches, as AdaptSegNet does.
        bn_mode: one of ``BN_MODES``; the seeds use ``"affine_frozen"``.
        aspp_dilations: ASPP rates, (6, 12, 18, 24) in the paper.
        blocks: bottlenecks per stage; (3, 4, 23, 3) is ResNet-101 (tests use shallower ones).
    """

    head_names = ("layer5", "layer6")

    def __init__(
        self,
        num_classes: int,
        multi_level: bool = True,
        aspp_bug_compat: bool = False,
        bn_mode: str = "affine_frozen",
        aspp_dilations: Sequence[int] = DEEPLAB_ASPP_DILATIONS,
        blocks: Sequence[int] = (3, 4, 23, 3),
    ) -> None:
        super().__init__()
        self.arch = f"resnet{3 * sum(blocks) + 2}"
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self.layer1 = _make_layer(64, 64, blocks[0])
        self.layer2 = _make_layer(256, 128, blocks[1], stride=2)
        self.layer3 = _make_layer(512, 256, blocks[2], dilation=2)
        self.layer4 = _make_layer(1024, 512, blocks[3], dilation=4)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self._add_heads(num_classes, (1024, 2048), multi_level, aspp_dilations, aspp_bug_compat)
        self._apply_bn_mode(bn_mode)

    def forward(self, x: Tensor) -> SegOutput:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer2(self.layer1(x))  # (B, 512, h, w), stride 8 from here on
        c3 = self.layer3(x)  # (B, 1024, h, w)
        return self._outputs(c3, self.layer4(c3))  # layer4: (B, 2048, h, w)


__all__ = [
    "ASPPClassifier",
    "BN_MODES",
    "Bottleneck",
    "DEEPLAB_ASPP_DILATIONS",
    "DeepLabSegmenter",
    "DeepLabV2ResNet101",
]
