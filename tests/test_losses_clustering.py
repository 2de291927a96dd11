"""MaxSquare, IW-MaxSquare and the prototype losses of orthogonal and clustered embeddings, on hand-computed cases."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from tests.tiny_runs import tiny_config
from udalib.losses.clustering import attraction, clustering_loss, repulsion
from udalib.losses.maxsquare import iw_maxsquare_loss, iw_weights, maxsquare_loss
from udalib.losses.orthogonality import prototype_entropy
from udalib.losses.prototypes import class_prototypes
from udalib.losses.sparsity import prototype_sparsity
from udalib.presets import resolve
from udalib.train import Trainer


def test_maxsquare_of_uniform_and_confident_predictions():
    c = 19
    uniform = torch.full((2, c, 3, 4), 1 / c)
    assert maxsquare_loss(uniform).item() == pytest.approx(-1 / (2 * c**2))
    onehot = torch.zeros(1, c, 2, 2)
    onehot[:, 3] = 1
    assert maxsquare_loss(onehot).item() == pytest.approx(-1 / (2 * c))  # mean over channels too


def test_iw_weights_balance_the_classes_of_each_image():
    prob = torch.tensor([[0.9, 0.9, 0.9, 0.2], [0.1, 0.1, 0.1, 0.8]]).reshape(1, 2, 2, 2)  # 3 pixels A, 1 pixel B
    w = iw_weights(prob, ratio=0.5).reshape(-1)
    assert w.tolist() == pytest.approx([1 / math.sqrt(12)] * 3 + [1 / math.sqrt(4)])  # 1/(N_c^r N^(1-r))
    assert iw_weights(prob, ratio=0.0).reshape(-1).tolist() == pytest.approx([0.25] * 4)  # r = 0: uniform 1/N
    with pytest.raises(ValueError, match="ratio must be in"):
        iw_weights(prob, ratio=1.5)


@pytest.mark.parametrize("ratio", [0.0, 0.2])
def test_iw_maxsquare_of_one_predicted_class_is_the_mean_square_per_class(ratio):
    c, p0 = 5, 0.6
    prob = torch.full((1, c, 4, 4), (1 - p0) / (c - 1))
    prob[:, 0] = p0  # every pixel predicted as class 0: w = 1/N for any ratio
    expected = -(p0**2 + (c - 1) * ((1 - p0) / (c - 1)) ** 2) / c
    assert iw_maxsquare_loss(prob, ratio).item() == pytest.approx(expected)


def test_prototypes_are_class_means_in_the_graph():
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 4.0], [9.0, 9.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 2, 255])  # void is left out
    centroids, seen = class_prototypes(feats, labels, num_classes=3)
    assert centroids.tolist() == [[2.0, 0.0], [0.0, 0.0], [0.0, 4.0]] and seen.tolist() == [True, False, True]
    centroids.sum().backward()
    assert feats.grad.tolist() == [[0.5, 0.5], [0.5, 0.5], [1.0, 1.0], [0.0, 0.0]]  # gradients flow through them


def test_clustering_attracts_to_the_own_prototype_and_repels_the_others():
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0])
    centroids = torch.tensor([[2.0, 0.0], [2.0, 2.0]])
    assert attraction(feats, labels, centroids).item() == pytest.approx(0.5)  # (1 + 1) / 4 entries
    assert attraction(feats, labels, centroids, p=2).item() == pytest.approx(math.sqrt(2) / 4)
    seen = torch.tensor([True, True])
    assert repulsion(centroids, seen).item() == pytest.approx(1.0)  # |(0, -2)| = 2 over 1 x 2 entries
    assert repulsion(centroids, torch.tensor([True, False])).item() == 0.0
    on_prototype = torch.tensor([[2.0, 0.0], [2.0, 0.0]])  # target features at their prototype: f_t = 0
    loss = clustering_loss(feats, labels, on_prototype, labels, centroids, seen, weights=(1.0, 2.0, 3.0))
    assert loss.item() == pytest.approx(0.5 + 2 * 0.0 - 3 * 1.0)


def test_orthogonality_is_low_for_aligned_features_and_log_k_over_k_for_ambiguous_ones():
    protos = torch.eye(3)
    aligned = torch.eye(3).repeat(4, 1)  # each feature is one prototype
    assert prototype_entropy(aligned, protos, temperature=0.01).item() < 1e-6
    ambiguous = torch.ones(5, 3)  # equally similar to every prototype
    assert prototype_entropy(ambiguous, protos).item() == pytest.approx(math.log(3) / 3)
    # the released raw dot products at T = 1: 2048-d ReLU features saturate the softmax
    big = torch.rand(8, 2048, generator=torch.Generator().manual_seed(0)) * 3
    raw, cosine = (prototype_entropy(big, big[:3], normalize=n).item() for n in (False, True))
    assert raw < 0.01 * math.log(3) / 3 < 0.3 < cosine  # near one-hot at once vs. near uniform
    assert prototype_entropy(aligned, protos[:1]).item() == 0.0  # one prototype: nothing to choose


def test_sparsity_rewards_prototypes_with_few_strong_channels():
    assert prototype_sparsity(torch.tensor([[2.0, 0.0]])).item() == pytest.approx(-0.25)  # (1 - .5)^2, (0 - .5)^2
    assert prototype_sparsity(torch.tensor([[1.0, 0.5]])).item() == pytest.approx(-0.125)
    assert prototype_sparsity(torch.zeros(2, 4)).item() == 0.0  # a zero prototype is left out


def test_centroid_smoothing_is_the_released_moving_average_and_keeps_absent_classes():
    from udalib.methods import build_method

    cfg = dataclasses.replace(resolve("ortho_cluster", "quick").method_cfg, centroid_smoothing=0.5)
    m = build_method("ortho_cluster", cfg, 3, feature_dim=2, total_iters=10)
    # step 1: class 0 alone, batch mean (3, 0); no average yet, so the average is the batch's (detached) and the
    # gradient reaching a feature is s / 2 = 0.25 (0.5 · c + 0.5 · c.detach())
    f1 = torch.tensor([[2.0, 0.0], [4.0, 0.0]], requires_grad=True)
    c, known = m._prototypes(f1, torch.tensor([0, 0]))
    assert c[0].tolist() == [3.0, 0.0] and known.tolist() == [True, False, False]
    c[0, 0].backward()
    assert f1.grad[:, 0].tolist() == [0.25, 0.25]
    # step 2: class 0's batch mean (1, 0) meets its average (3, 0): (2, 0); class 1 is new: its batch mean (0, 2)
    c, known = m._prototypes(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]))
    assert c[:2].tolist() == [[2.0, 0.0], [0.0, 2.0]] and known.tolist() == [True, True, False]
    # step 3: class 1 alone, (0, 4) with (0, 2): (0, 3); class 0, absent, keeps its average (2, 0) and stays seen
    c, known = m._prototypes(torch.tensor([[0.0, 4.0]]), torch.tensor([1]))
    assert c[:2].tolist() == [[2.0, 0.0], [0.0, 3.0]] and known.tolist() == [True, True, False]
    assert m.centroid_avg[:2].tolist() == [[2.0, 0.0], [0.0, 3.0]]
    with pytest.raises(ValueError, match="centroid_smoothing must be in"):
        build_method("ortho_cluster", dataclasses.replace(cfg, centroid_smoothing=1.5), 3, feature_dim=2, total_iters=1)


def test_ortho_cluster_trains_and_keeps_its_ema_prototypes(tiny_cache, tmp_path):
    cfg = tiny_config("ortho_cluster", tmp_path, iters=2, init_checkpoint=None)
    cfg = dataclasses.replace(cfg, method_cfg=dataclasses.replace(cfg.method_cfg, centroid_smoothing=0.5))
    result = Trainer(cfg, progress="none").fit()
    assert result.method.centroid_seen.any() and result.method.centroid_avg.abs().sum() > 0
    state = torch.load(cfg.final_checkpoint, weights_only=True)
    assert {"centroid_avg", "centroid_seen"} <= set(state["method"])
    logged = [line for line in (tmp_path / "ortho_cluster" / "log.jsonl").read_text().splitlines()]
    assert logged and all(key in logged[-1] for key in ('"ms"', '"cl"', '"orth"', '"sp"'))


def test_paper_settings_follow_the_released_commands(monkeypatch):
    from udalib.presets import resolve

    monkeypatch.setenv("UDABOOK_PAPER_ON_CPU", "1")
    kw = dict(data_root="/data/src", target_root="/data/cityscapes", device="cpu")
    r101 = resolve("ortho_cluster", "paper", dataset="gta5", **kw)
    m = r101.method_cfg
    assert (m.lambda_cluster, m.lambda_ortho, m.lambda_sparse, m.lambda_target, m.iw_ratio) == (
        0.02,
        2.0,
        0.5,
        0.1,
        0.2,
    )
    assert r101.train.head_lr_mult == 10.0 and r101.train.iters == r101.train.poly_horizon == 24_760
    vgg = resolve("ortho_cluster", "paper", dataset="gta5", backbone="vgg16", **kw)
    m = vgg.method_cfg
    assert (m.lambda_cluster, m.lambda_ortho, m.lambda_sparse, m.lambda_target) == (0.1, 0.02, 0.02, 0.02)
    assert vgg.train.head_lr_mult == 1.0  # the VGG classifier at the backbone's LR
    synthia = resolve("ortho_cluster", "paper", dataset="synthia", **kw).method_cfg
    assert (synthia.lambda_ortho, synthia.lambda_sparse, synthia.lambda_target, synthia.iw_ratio) == (
        0.1,
        1.0,
        0.05,
        0.0,
    )
    assert resolve("maxsquare_iw", "paper", dataset="synthia", backbone="vgg16", **kw).method_cfg.lambda_target == 0.01
    # an explicit override still wins over the setting
    over = resolve("ortho_cluster", "paper", dataset="synthia", method_overrides={"lambda_sparse": 0.3}, **kw)
    assert over.method_cfg.lambda_sparse == 0.3
