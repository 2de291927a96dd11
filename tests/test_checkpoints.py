"""Checkpoint loading: the seeds' key layout, torchvision mapping, refusals, safe unpickling."""

from __future__ import annotations

import argparse
import socket

import pytest
import torch
import torchvision

from udalib.models import (
    DeepLabV2ResNet101,
    DeepLabVGG16,
    SmallDeepLab,
    build_model,
    describe_architecture,
    imagenet_checkpoint_path,
    load_checkpoint_into,
)

K = 19
# One bottleneck per stage: 17 convs (stem, 4 x 3, 4 shortcuts) + 17 BN x 4 tensors = 85 tensors.
SHALLOW_BACKBONE_TENSORS = 85


def shallow_resnet(seed: int, num_classes: int = K, **kwargs) -> DeepLabV2ResNet101:
    torch.manual_seed(seed)
    return DeepLabV2ResNet101(num_classes, blocks=(1, 1, 1, 1), **kwargs)


def seeds_init_state(model: DeepLabV2ResNet101) -> dict[str, torch.Tensor]:
    """A state dict laid out like DeepLab_resnet_pretrained_init-f81d91e8.pth (AdaptSegNet's init weights).

    Every key behind ``Scale.``, no ``num_batches_tracked`` (pre-1.0 file), no layer6, and a
    21-class VOC ``layer5`` on 2048 channels.
    """
    state = {
        f"Scale.{k}": v.clone()
        for k, v in model.state_dict().items()
        if not k.startswith(("layer5.", "layer6.")) and not k.endswith("num_batches_tracked")
    }
    for i in range(4):
        state[f"Scale.layer5.conv2d_list.{i}.weight"] = torch.randn(21, 2048, 3, 3)
        state[f"Scale.layer5.conv2d_list.{i}.bias"] = torch.randn(21)
    return state


def test_seeds_init_file_loads_backbone_and_skips_voc_head(tmp_path, capsys):
    source = shallow_resnet(seed=1)
    with torch.no_grad():
        source.layer2[0].bn2.running_mean.normal_()
    path = tmp_path / "DeepLab_resnet_pretrained_init-f81d91e8.pth"
    torch.save(seeds_init_state(source), path)

    model = shallow_resnet(seed=2)
    heads_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("layer")}
    report = load_checkpoint_into(model, path)

    assert report.source == "seed"
    assert len(report.loaded) == SHALLOW_BACKBONE_TENSORS
    assert sorted(report.skipped) == sorted(f"layer5.conv2d_list.{i}.{p}" for i in range(4) for p in ("weight", "bias"))
    assert "21-class head on 2048 channels" in next(iter(report.skipped.values()))
    assert len(report.missing) == 16  # both heads stay random, as in the seeds
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer2[0].bn2.running_mean, source.layer2[0].bn2.running_mean)
    assert torch.equal(model.layer6.conv2d_list[0].weight, heads_before["layer6.conv2d_list.0.weight"])
    assert "loaded 85 tensors, skipped 8, missing 16" in capsys.readouterr().out


def test_seeds_init_file_into_single_level_model():
    model = shallow_resnet(seed=2, multi_level=False)
    report = load_checkpoint_into(model, seeds_init_state(shallow_resnet(seed=1)), verbose=False)
    assert len(report.loaded) == SHALLOW_BACKBONE_TENSORS
    assert len(report.skipped) == 8 and len(report.missing) == 8


def test_missing_backbone_tensor_raises():
    state = seeds_init_state(shallow_resnet(seed=1))
    del state["Scale.layer2.0.conv1.weight"]
    with pytest.raises(ValueError, match=r"lacks 1 backbone tensor.*layer2\.0\.conv1\.weight"):
        load_checkpoint_into(shallow_resnet(seed=2), state)


def test_misshaped_backbone_tensor_raises():
    state = seeds_init_state(shallow_resnet(seed=1))
    state["Scale.layer1.0.conv2.weight"] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(ValueError, match="layer1.0.conv2.weight: checkpoint"):
        load_checkpoint_into(shallow_resnet(seed=2), state)


def test_trained_model_round_trip_with_dataparallel_prefix():
    trained = shallow_resnet(seed=1).eval()
    state = {f"module.{k}": v for k, v in trained.state_dict().items()}
    model = shallow_resnet(seed=2).eval()
    report = load_checkpoint_into(model, state, verbose=False)
    assert len(report.loaded) == len(trained.state_dict()) and not report.skipped and not report.missing
    x = torch.randn(1, 3, 41, 41)
    with torch.no_grad():
        assert torch.equal(model(x).logits, trained(x).logits)


def test_checkpoint_for_another_class_count_is_refused():
    state = shallow_resnet(seed=1, num_classes=16).state_dict()
    with pytest.raises(ValueError, match="has 16 classes, model has 19"):
        load_checkpoint_into(shallow_resnet(seed=2), state)


def test_checkpoint_for_another_architecture_is_refused():
    with torch.device("meta"):
        vgg_state = DeepLabVGG16(K).state_dict()
    with pytest.raises(ValueError, match="checkpoint is a vgg16, model is resnet14"):
        load_checkpoint_into(shallow_resnet(seed=0), vgg_state)
    with pytest.raises(ValueError, match="checkpoint is a resnet14, model is small"):
        load_checkpoint_into(SmallDeepLab(K), shallow_resnet(seed=0).state_dict())
    with torch.device("meta"):
        resnet50 = torchvision.models.resnet50(weights=None).state_dict()
    assert describe_architecture(resnet50) == "resnet50"


def test_torchvision_resnet101_maps_onto_the_whole_backbone():
    torch.manual_seed(0)
    tv_state = torchvision.models.resnet101(weights=None).state_dict()
    model = DeepLabV2ResNet101(K)
    report = load_checkpoint_into(model, tv_state, verbose=False)
    assert report.source == "torchvision"
    # 104 convs + 104 BN x 5 tensors (num_batches_tracked included): every backbone tensor.
    assert len(report.loaded) == 624 == len(tv_state) - 2
    assert sorted(report.skipped) == ["fc.bias", "fc.weight"]
    assert len(report.missing) == 16
    assert torch.equal(model.layer3[22].conv2.weight, tv_state["layer3.22.conv2.weight"])
    assert torch.equal(model.layer4[0].downsample[1].running_var, tv_state["layer4.0.downsample.1.running_var"])


def test_torchvision_vgg16_is_reindexed_around_pool4():
    with torch.device("meta"):
        tv_keys = torchvision.models.vgg16(weights=None).state_dict()
    # Real values for the convs; the 4096-wide classifier is only allocated, never read.
    torch.manual_seed(0)
    tv_state = {
        k: torch.randn(v.shape) if k.startswith("features.") else torch.empty(v.shape) for k, v in tv_keys.items()
    }
    model = DeepLabVGG16(K)
    fc7_before = model.features[31].weight.clone()
    report = load_checkpoint_into(model, tv_state, verbose=False)
    assert report.source == "torchvision"
    assert len(report.loaded) == 26  # 13 convs x (weight, bias)
    assert sorted(report.skipped) == [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("bias", "weight")]
    assert len(report.missing) == 4 + 8  # fc6, fc7 and the ASPP head stay random
    assert "missing 12 in classifier, features.29, features.31" in str(report)
    assert torch.equal(model.features[23].weight, tv_state["features.24.weight"])  # conv5_1
    assert torch.equal(model.features[27].bias, tv_state["features.28.bias"])  # conv5_3
    assert torch.equal(model.features[21].weight, tv_state["features.21.weight"])  # conv4_3
    assert torch.equal(model.features[31].weight, fc7_before)


def test_adaptsegnet_vgg_layout_loads_as_is():
    trained = DeepLabVGG16(K)
    model = DeepLabVGG16(K)
    report = load_checkpoint_into(model, trained.state_dict(), verbose=False)
    assert report.source == "seed" and len(report.loaded) == 38 and not report.missing
    assert torch.equal(model.features[29].weight, trained.features[29].weight)


def test_udalib_trainer_checkpoint_is_unwrapped_and_strict(tmp_path):
    trained = SmallDeepLab(K)
    path = tmp_path / "last.pth"
    torch.save({"model": trained.state_dict(), "iter": 300, "miou": 41.3}, path)
    model = SmallDeepLab(K)
    report = load_checkpoint_into(model, path, source="udalib", verbose=False)
    assert len(report.loaded) == len(trained.state_dict())
    assert torch.equal(model.layer6.conv2d_list[3].bias, trained.layer6.conv2d_list[3].bias)
    with pytest.raises(ValueError, match="must match the model exactly"):
        load_checkpoint_into(SmallDeepLab(K, multi_level=False), path, source="udalib")


def test_udalib_multi_level_checkpoint_may_start_a_single_level_model(tmp_path):
    # single-level AdaptSegNet starts from the multi-level source-only stage: only the aux head is dropped
    trained = SmallDeepLab(K)
    model = SmallDeepLab(K, multi_level=False)
    report = load_checkpoint_into(model, trained.state_dict(), source="udalib", verbose=False, drop_heads=True)
    assert len(report.loaded) == len(model.state_dict())
    assert report.skipped and all(k.startswith("layer5.") for k in report.skipped)
    assert torch.equal(model.layer6.conv2d_list[0].weight, trained.layer6.conv2d_list[0].weight)
    # the reverse leaves a head at random init: still refused
    with pytest.raises(ValueError, match="must match the model exactly"):
        load_checkpoint_into(SmallDeepLab(K), model.state_dict(), source="udalib", drop_heads=True)


def test_build_model_loads_a_checkpoint_path(tmp_path):
    trained = SmallDeepLab(K)
    path = tmp_path / "small.pth"
    torch.save(trained.state_dict(), path)
    model = build_model("small", K, pretrained=path)
    assert torch.equal(model.layer4.conv2.weight, trained.layer4.conv2.weight)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "GTA2Cityscapes_multi-ed35151c.pth"
    with pytest.raises(FileNotFoundError, match="GTA2Cityscapes_multi-ed35151c.pth"):
        load_checkpoint_into(SmallDeepLab(K), path)


def test_non_tensor_pickle_payload_is_refused(tmp_path):
    path = tmp_path / "with_args.pth"
    # The seeds' scripts sometimes saved their argparse namespace next to the weights.
    torch.save({"state_dict": SmallDeepLab(K).state_dict(), "args": argparse.Namespace(lr=2.5e-4)}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint_into(SmallDeepLab(K), path)


def test_imagenet_weights_missing_from_empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would override TORCH_HOME

    def no_network(*args, **kwargs):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    expected = tmp_path / "hub" / "checkpoints" / "resnet101-63fe2227.pth"
    with pytest.raises(RuntimeError, match="not in the torch hub cache") as err:
        build_model("resnet101", K, pretrained="imagenet")
    assert str(expected) in str(err.value) and "does not download" in str(err.value)
    with pytest.raises(RuntimeError, match="vgg16-397923af.pth"):
        build_model("vgg16", K, pretrained="imagenet")

    expected.parent.mkdir(parents=True)
    expected.touch()
    assert imagenet_checkpoint_path("resnet101") == expected
