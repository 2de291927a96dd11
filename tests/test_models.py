"""Segmenters and discriminators: shapes of the released networks, parameter counts, ASPP, BN modes, groups.

Full-size ResNet-101 checks run on the meta device (shapes without arithmetic); numerical checks
use a one-block-per-stage variant of the same class, which shares every code path but depth.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from udalib.models import (
    ASPPClassifier,
    DeepLabV2ResNet101,
    DeepLabVGG16,
    PatchDiscriminator,
    PixelDiscriminator,
    SegOutput,
    SmallDeepLab,
    build_model,
)

K = 19


def shallow_resnet(**kwargs) -> DeepLabV2ResNet101:
    torch.manual_seed(0)
    return DeepLabV2ResNet101(K, blocks=(1, 1, 1, 1), **kwargs)


@pytest.fixture(scope="module")
def meta_resnet101() -> DeepLabV2ResNet101:
    with torch.device("meta"):
        return DeepLabV2ResNet101(K).eval()


def deeplab_output_side(size: int) -> int:
    """``deeplab_multi.py:ResNetMulti``: conv1 (k7 s2 p3), max-pool (k3 s2 p1, ceil), then layer2's stride 2."""
    after_conv1 = math.floor((size + 2 * 3 - 7) / 2) + 1
    after_pool = math.ceil((after_conv1 + 2 * 1 - 3) / 2) + 1
    return math.floor((after_pool - 1) / 2) + 1


def seeds_resnet_multi_param_count(num_classes: int) -> int:
    """Parameters of the seeds' ResNetMulti (Bottleneck [3, 4, 23, 3]), by hand."""

    def conv(c_in: int, c_out: int, k: int = 1) -> int:
        return c_in * c_out * k * k  # bias=False

    def bn(c: int) -> int:
        return 2 * c  # gamma and beta (running stats are buffers)

    total = conv(3, 64, 7) + bn(64)
    c_in = 64
    for planes, blocks in zip((64, 128, 256, 512), (3, 4, 23, 3)):
        c_out = 4 * planes
        total += conv(c_in, c_out) + bn(c_out)  # projection shortcut, first block of each stage
        for i in range(blocks):
            total += conv(c_in if i == 0 else c_out, planes) + bn(planes)
            total += conv(planes, planes, 3) + bn(planes)
            total += conv(planes, c_out) + bn(c_out)
        c_in = c_out
    aspp = [4 * (conv(c, num_classes, 3) + num_classes) for c in (1024, 2048)]  # layer5, layer6
    return total + sum(aspp)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------- ResNet-101


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((512, 1024), (65, 129)),
        ((720, 1280), (91, 161)),
        ((760, 1280), (96, 161)),
        ((256, 512), (33, 65)),
        ((360, 640), (46, 81)),
    ],
)
def test_resnet101_output_sizes_match_spec_table(meta_resnet101, size, expected):
    out = meta_resnet101(torch.empty(1, 3, *size, device="meta"))
    assert isinstance(out, SegOutput)
    assert tuple(out.logits.shape) == (1, K, *expected)
    assert tuple(out.aux_logits.shape) == (1, K, *expected)
    assert tuple(out.features.shape) == (1, 2048, *expected)
    assert tuple(deeplab_output_side(s) for s in size) == expected


def test_resnet101_single_level_has_no_aux_head():
    with torch.device("meta"):
        model = DeepLabV2ResNet101(K, multi_level=False)
    out = model(torch.empty(2, 3, 256, 512, device="meta"))
    assert out.aux_logits is None
    assert tuple(out.logits.shape) == (2, K, 33, 65)
    assert not any(name.startswith("layer5.") for name in model.state_dict())


@pytest.mark.parametrize("size", [(33, 41), (47, 62)])
def test_resnet_real_forward_matches_closed_form(size):
    model = shallow_resnet().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    expected = tuple(deeplab_output_side(s) for s in size)
    assert tuple(out.logits.shape[2:]) == expected
    assert tuple(out.aux_logits.shape[2:]) == expected
    assert out.features.shape[1] == 2048
    assert torch.isfinite(out.logits).all()
    assert (out.features >= 0).all()  # post-ReLU, as the feature-level losses assume


def test_resnet101_parameter_count_matches_seeds_architecture(meta_resnet101):
    seeds = seeds_resnet_multi_param_count(K)
    ours = n_params(meta_resnet101)
    assert seeds == 44_601_560
    assert abs(ours - seeds) / seeds < 0.01
    # The backbone has exactly torchvision's ResNet-101 shapes (its fc layer aside).
    with torch.device("meta"):
        tv = torchvision.models.resnet101(weights=None)
    heads = n_params(meta_resnet101.layer5) + n_params(meta_resnet101.layer6)
    assert ours - heads == n_params(tv) - n_params(tv.fc) == 42_500_160


def test_resnet101_follows_the_seeds_layout(meta_resnet101):
    m = meta_resnet101
    assert m.maxpool.ceil_mode and m.maxpool.kernel_size == 3 and m.maxpool.padding == 1
    first = m.layer2[0]
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)  # Caffe: stride on 1x1
    assert [m.layer3[0].conv2.dilation, m.layer4[2].conv2.dilation] == [(2, 2), (4, 4)]
    assert m.layer4[2].conv2.padding == (4, 4)
    assert [len(m.layer1), len(m.layer2), len(m.layer3), len(m.layer4)] == [3, 4, 23, 3]
    assert all(m.get_submodule(f"layer{i}.0").downsample is not None for i in range(1, 5))
    assert m.layer3[1].downsample is None
    convs = [c for name, c in m.named_modules() if isinstance(c, nn.Conv2d) and "layer" in name]
    assert all(c.bias is None for c in convs if c.out_channels != K)
    assert [c.dilation[0] for c in m.layer6.conv2d_list] == [6, 12, 18, 24]
    assert [c.padding[0] for c in m.layer6.conv2d_list] == [6, 12, 18, 24]
    assert m.layer5.conv2d_list[0].in_channels == 1024
    keys = m.state_dict().keys()
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer3.22.bn3.bias",
        "layer5.conv2d_list.3.bias",
        "layer6.conv2d_list.0.weight",
    ):
        assert key in keys


def test_resnet_init_is_deeplabs():
    model = shallow_resnet()
    assert abs(model.layer3[0].conv2.weight.std().item() - 0.01) < 0.001
    assert abs(model.layer6.conv2d_list[2].weight.std().item() - 0.01) < 0.001
    assert torch.equal(model.layer2[0].bn1.weight, torch.ones(128))
    assert torch.equal(model.layer2[0].bn1.bias, torch.zeros(128))


# ------------------------------------------------------------------------------------- ASPP


def test_aspp_sums_all_four_branches():
    torch.manual_seed(0)
    aspp = ASPPClassifier(8, 3)
    x = torch.randn(2, 8, 30, 30)
    branches = [conv(x) for conv in aspp.conv2d_list]
    assert torch.allclose(aspp(x), sum(branches), atol=1e-6)
    assert not torch.allclose(aspp(x), branches[0] + branches[1], atol=1e-3)


def test_aspp_bug_compat_sums_only_the_first_two_branches():
    torch.manual_seed(0)
    aspp = ASPPClassifier(8, 3, bug_compat=True)
    x = torch.randn(2, 8, 30, 30)
    branches = [conv(x) for conv in aspp.conv2d_list]
    assert len(aspp.conv2d_list) == 4  # branches 18 and 24 still exist, for official checkpoints
    assert torch.allclose(aspp(x), branches[0] + branches[1], atol=1e-6)
    assert not torch.allclose(aspp(x), sum(branches), atol=1e-3)
    assert [c.weight.requires_grad for c in aspp.conv2d_list] == [True, True, False, False]


def test_model_level_aspp_bug_compat():
    model = shallow_resnet(aspp_bug_compat=True).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 97, 97))
        convs = model.layer6.conv2d_list
        manual = convs[0](out.features) + convs[1](out.features)
        full = manual + convs[2](out.features) + convs[3](out.features)
    assert torch.allclose(out.logits, manual, atol=1e-6)
    assert not torch.allclose(out.logits, full, atol=1e-4)


# --------------------------------------------------------------------------------- BN modes


def batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_affine_frozen_bn_uses_and_updates_batch_statistics():
    model = shallow_resnet(bn_mode="affine_frozen").train()
    assert all(not p.requires_grad for bn in batchnorms(model) for p in bn.parameters())
    assert all(bn.training for bn in batchnorms(model))
    before = model.layer3[0].bn2.running_mean.clone()
    model(torch.randn(1, 3, 41, 41))
    assert not torch.allclose(model.layer3[0].bn2.running_mean, before)
    assert model.bn1.num_batches_tracked.item() == 1


def test_frozen_bn_stays_in_eval_mode_after_train():
    model = shallow_resnet(bn_mode="frozen")
    model.train()
    assert model.training and not any(bn.training for bn in batchnorms(model))
    assert all(not p.requires_grad for bn in batchnorms(model) for p in bn.parameters())
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    x = torch.randn(1, 3, 41, 41)
    train_logits = model(x).logits
    for key, value in stats.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert torch.allclose(train_logits, model.eval()(x).logits)


def test_trainable_bn_and_bad_mode():
    model = shallow_resnet(bn_mode="trainable")
    assert all(p.requires_grad for bn in batchnorms(model) for p in bn.parameters())
    with pytest.raises(ValueError, match="bn_mode must be one of"):
        shallow_resnet(bn_mode="sync")


# ------------------------------------------------------------------------- parameter groups


def check_groups(model: nn.Module, head_names: tuple[str, ...]) -> list[dict]:
    groups = model.parameter_groups()
    assert [g["lr_mult"] for g in groups] == [1.0, 10.0]
    ids = [{id(p) for p in g["params"]} for g in groups]
    assert not ids[0] & ids[1]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert ids[0] | ids[1] == trainable
    heads = {id(p) for n, p in model.named_parameters() if p.requires_grad and n.startswith(head_names)}
    assert ids[1] == heads
    return groups


def test_resnet101_parameter_groups(meta_resnet101):
    groups = check_groups(meta_resnet101, ("layer5.", "layer6."))
    # 104 conv weights (1 stem + 33 blocks x 3 + 4 shortcuts), no BN affine; 2 heads x 4 x (w, b).
    assert len(groups[0]["params"]) == 104
    assert all(p.ndim == 4 for p in groups[0]["params"])
    assert len(groups[1]["params"]) == 16


def test_parameter_groups_bug_compat_and_trainable_bn():
    groups = check_groups(shallow_resnet(aspp_bug_compat=True), ("layer5.", "layer6."))
    assert len(groups[1]["params"]) == 8  # two live branches x (w, b) x two heads
    groups = check_groups(shallow_resnet(bn_mode="trainable"), ("layer5.", "layer6."))
    assert len(groups[0]["params"]) == 17 * 3  # 17 convs, 17 BN (gamma, beta)


def test_vgg_and_small_parameter_groups():
    with torch.device("meta"):
        vgg = DeepLabVGG16(K)
    groups = check_groups(vgg, ("classifier.",))
    assert len(groups[0]["params"]) == 15 * 2  # 13 VGG convs + fc6 + fc7, weight and bias
    assert vgg.parameter_groups(head_lr_mult=1.0)[1]["lr_mult"] == 1.0
    groups = check_groups(SmallDeepLab(K), ("layer5.", "layer6."))
    assert len(groups[1]["params"]) == 16


# ------------------------------------------------------------------------------------ VGG-16


def test_vgg16_output_sizes_and_layout():
    with torch.device("meta"):
        vgg = DeepLabVGG16(K)
    out = vgg(torch.empty(1, 3, 512, 1024, device="meta"))
    assert tuple(out.logits.shape) == (1, K, 64, 128)
    assert tuple(out.features.shape) == (1, 1024, 64, 128)
    assert out.aux_logits is None
    convs = [m for m in vgg.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 15 and sum(isinstance(m, nn.MaxPool2d) for m in vgg.features) == 3
    assert [c.dilation[0] for c in convs[10:]] == [2, 2, 2, 4, 4]
    assert [c.padding[0] for c in convs[10:]] == [2, 2, 2, 4, 4]
    assert (convs[-2].in_channels, convs[-2].out_channels, convs[-1].kernel_size) == (512, 1024, (3, 3))
    # torchvision's VGG-16 without pool4/pool5, then fc6/fc7: 14.71 M + 4.72 M + 9.44 M convs.
    assert n_params(vgg.features) == 14_714_688 + 4_719_616 + 9_438_208


def test_vgg16_real_forward():
    torch.manual_seed(0)
    vgg = DeepLabVGG16(K)
    with torch.no_grad():
        out = vgg(torch.randn(1, 3, 64, 96))
    assert tuple(out.logits.shape) == (1, K, 8, 12)
    assert (out.features >= 0).all() and torch.isfinite(out.logits).all()


# ------------------------------------------------------------------------------- small model


def test_small_model_shapes():
    model = SmallDeepLab(K)
    out = model(torch.randn(2, 3, 64, 128))
    assert tuple(out.logits.shape) == (2, K, 16, 32)
    assert tuple(out.aux_logits.shape) == (2, K, 16, 32)
    assert tuple(out.features.shape) == (2, 128, 16, 32)
    assert SmallDeepLab(K, multi_level=False)(torch.randn(1, 3, 64, 128)).aux_logits is None
    assert [c.dilation[0] for c in model.layer6.conv2d_list] == [1, 2, 3, 4]
    assert all(p.requires_grad for bn in batchnorms(model) for p in bn.parameters())


@pytest.mark.parametrize("bug_compat", [False, True])
def test_small_model_every_trainable_parameter_gets_a_gradient(bug_compat):
    model = SmallDeepLab(K, aspp_bug_compat=bug_compat).train()
    out = model(torch.randn(2, 3, 32, 64))
    (out.logits.square().mean() + out.aux_logits.square().mean()).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


# ---------------------------------------------------------------- channels_last and autocast


@pytest.mark.parametrize("make", [lambda: SmallDeepLab(K), shallow_resnet])
def test_channels_last_gives_the_same_outputs(make):
    model = make().eval()
    x = torch.randn(1, 3, 41, 57)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    assert torch.allclose(out.logits, ref.logits, atol=1e-4, rtol=1e-4)
    assert torch.allclose(out.features, ref.features, atol=1e-4, rtol=1e-4)


def test_autocast_bfloat16():
    model = SmallDeepLab(K).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 32, 64))
    assert out.logits.dtype == out.aux_logits.dtype == torch.bfloat16
    assert torch.isfinite(out.logits.float()).all()
    out.logits.float().mean().backward()
    assert model.layer6.conv2d_list[0].weight.grad is not None
    resnet = shallow_resnet().eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = resnet(torch.randn(1, 3, 33, 33))
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits.float()).all()


# ------------------------------------------------------------------------------ build_model


def test_build_model_defaults_and_errors(tmp_path):
    with torch.device("meta"):
        r101 = build_model("resnet101", K)
        r101_frozen = build_model("resnet101", 16, multi_level=False, bn_mode="frozen")
        vgg = build_model("vgg16", K, aspp_bug_compat=True)
    assert isinstance(r101, DeepLabV2ResNet101) and r101.multi_level and r101.bn_mode == "affine_frozen"
    assert r101_frozen.layer5 is None and r101_frozen.bn_mode == "frozen"
    assert r101_frozen.layer6.conv2d_list[0].out_channels == 16
    assert isinstance(vgg, DeepLabVGG16) and vgg.classifier.num_active == 2
    small = build_model("small", K, aspp_dilations=(1, 2))
    assert small.bn_mode == "trainable" and len(small.layer6.conv2d_list) == 2

    with pytest.raises(ValueError, match="resnet101, vgg16, small"):
        build_model("resnet50", K)
    with pytest.raises(ValueError, match="single-level"):
        build_model("vgg16", K, multi_level=True)
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_model("small", K, pretrained="imagenet")
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_model("small", K, pretrained=missing)


# ---------------------------------------------------------------------------- discriminators


@pytest.mark.parametrize(("size", "expected"), [((512, 1024), (16, 32)), ((720, 1280), (22, 40))])
def test_patch_discriminator_output_size(size, expected):
    with torch.device("meta"):
        d = PatchDiscriminator(K)
    assert tuple(d(torch.empty(2, K, *size, device="meta")).shape) == (2, 1, *expected)


def test_patch_discriminator_layout():
    d = PatchDiscriminator(K)
    convs = [m for m in d if isinstance(m, nn.Conv2d)]
    assert [c.in_channels for c in convs] + [convs[-1].out_channels] == [K, 64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs)
    assert all(c.bias is not None for c in convs)
    relus = [m for m in d if isinstance(m, nn.LeakyReLU)]
    assert len(relus) == 4 and all(r.negative_slope == 0.2 for r in relus)
    assert isinstance(d[-1], nn.Conv2d) and len(d) == 9  # raw logits: no sigmoid, no norm
    assert tuple(d(torch.randn(1, K, 64, 96)).shape) == (1, 1, 2, 3)


def test_pixel_discriminator_is_per_pixel():
    torch.manual_seed(0)
    d = PixelDiscriminator(K)
    convs = [m for m in d if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (1, 1) for c in convs)
    x = torch.randn(2, K, 13, 17)
    out = d(x)
    assert tuple(out.shape) == (2, 1, 13, 17)
    x[0, :, 5, 7] += 1.0  # changing one pixel changes only that pixel's score
    changed = (d(x) != out).squeeze(1)
    assert changed.sum().item() == 1 and changed[0, 5, 7]
