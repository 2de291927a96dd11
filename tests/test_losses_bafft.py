"""BAFFT's building blocks on hand-computed cases: masked pooling, banks, instances, ISIA, AIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from udalib.losses.aim import RELEASED_THING_WEIGHTS, AlignComplexity, self_weighted
from udalib.losses.feature_banks import FeatureBank
from udalib.losses.instances import components, instance_masks
from udalib.losses.isia import d_sim, isia_terms, probability_map_terms, stuff_thing_separation
from udalib.losses.masked_pooling import class_masks, classifier_agrees, correct_labels, masked_average_pool


def test_masked_average_pool_is_the_mean_under_each_mask_for_every_image_at_once():
    feats = torch.arange(2 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 2, 2, 2)  # (B, D, h, w)
    masks = torch.tensor([[[[1, 0], [0, 1]], [[0, 0], [0, 0]]], [[[0, 1], [0, 0]], [[1, 1], [1, 1]]]]).float()
    pooled = masked_average_pool(feats, masks)  # (B, M, D)
    assert pooled[0, 0].tolist() == [(0 + 3) / 2, (4 + 7) / 2]
    assert pooled[0, 1].tolist() == [0.0, 0.0]  # an empty mask pools to zero
    assert pooled[1, 0].tolist() == [9.0, 13.0] and pooled[1, 1].tolist() == [9.5, 13.5]


def test_only_correct_source_pixels_and_class_masks():
    labels = torch.tensor([[[0, 1], [2, 255]]])
    preds = torch.tensor([[[0, 2], [2, 1]]])
    assert correct_labels(labels, preds).tolist() == [[[0, 255], [2, 255]]]
    assert class_masks(labels, [2, 0]).tolist() == [[[[0, 0], [1, 0]], [[1, 0], [0, 0]]]]


def test_the_self_consistency_filter_asks_the_head():
    head = nn.Conv2d(2, 3, 1, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])[:, :, None, None])
    vectors = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    assert classifier_agrees(head, vectors, torch.tensor([0, 1, 2])).tolist() == [True, True, False]


def test_the_bank_is_a_fifo_per_class_ready_once_filled_and_saved():
    bank = FeatureBank(num_classes=2, slots=3, dim=2)
    for v in range(4):  # four writes of class 1 into three slots: the first is overwritten
        bank.push(torch.tensor([1]), torch.tensor([[float(v), 0.0]]))
    assert bank.bank[1, :, 0].tolist() == [3.0, 1.0, 2.0] and bank.pointer.tolist() == [0, 4]
    assert bank.ready().tolist() == [False, True]  # pointer / slots > 1, as released
    d = bank.nearest_distance(torch.tensor([[2.5, 1.0]]), torch.tensor([1]))
    assert d.item() == pytest.approx((0.5 + 1.0) / 2)  # nearest entry (2, 0): mean |diff| over D
    bank.push(torch.tensor([0, 0]), torch.tensor([[1.0, 1.0], [2.0, 2.0]]))  # several rows of a class at once
    assert bank.pointer.tolist() == [2, 4] and bank.bank[0, :2].tolist() == [[1.0, 1.0], [2.0, 2.0]]
    assert {"bank", "pointer"} <= set(bank.state_dict())


def test_instances_of_equal_size_come_in_the_released_order_the_later_one_first():
    # components in raster order: A (2 pixels, label 1), B (1, label 2), C (2, label 3), D (1, label 4)
    mask = np.array([[1, 1, 0, 1, 0, 1, 1, 0, 1]], dtype=bool)
    starts = [int(np.flatnonzero(p[0])[0]) for p in components(mask, top=10)]
    assert starts == [5, 0, 8, 3]  # np.argsort([2, 1, 2, 1])[::-1] = [2, 0, 3, 1]: C, A, D, B
    assert [int(np.flatnonzero(p[0])[0]) for p in components(mask, top=1)] == [5]  # the cap keeps C, not A


def test_instances_are_eight_connected_components_largest_first():
    mask = np.array(
        [
            [1, 0, 0, 1, 1],
            [0, 1, 0, 1, 1],
            [0, 0, 0, 0, 0],
            [1, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    parts = components(mask, top=10)
    assert [int(p.sum()) for p in parts] == [4, 2, 1]  # the diagonal pair is one component (8-connectivity)
    assert len(components(mask, top=2)) == 2 and components(np.zeros((3, 3), bool)) == []
    labels = torch.tensor(np.where(mask, 5, 0))[None]  # one image, class 5 where the mask is
    masks, owner = instance_masks(torch.cat([labels, torch.zeros_like(labels)]), classes=[5], top=10)
    assert masks.shape == (2, 3, 4, 5) and owner.tolist() == [[5, 5, 5], [-1, -1, -1]]  # padded for image 2
    assert masks[0].sum(dim=(1, 2)).tolist() == [4.0, 2.0, 1.0]


def test_isia_pulls_the_same_class_together_and_pushes_different_classes_apart():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0], [9.0, 9.0]])
    present_s = torch.tensor([True, True, True])
    present_t = torch.tensor([True, True, False])  # class 2 has no target pixels: left out
    agg, sep = isia_terms(s, t, present_s, present_t)
    assert agg.item() == pytest.approx(0.0 + 1.0)  # class 1: mean |(0,1) - (1,0)| = 1
    # cross-class pairs (s0, t1) and (s1, t0): cos 1 and cos 0 -> D_sim 1 and 0.5
    assert sep.item() == pytest.approx(1.5)
    assert d_sim(torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]])).item() == 0.0
    none = isia_terms(s, t, torch.tensor([True, False, False]), torch.tensor([False, True, False]))
    assert [x.item() for x in none] == [0.0, 0.0]


def test_the_released_separation_and_the_singleton_cosine_pitfall():
    stuff = torch.tensor([[1.0, 0.0]])
    things = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    classes = torch.tensor([11, 11, 13])  # two person instances, one car
    assert stuff_thing_separation(stuff, things, classes).item() == pytest.approx((1.0 + 0.5) / 2 + 0.0)
    assert stuff_thing_separation(stuff, things, classes, scale=500 / 2048).item() == pytest.approx(0.75 * 500 / 2048)
    # the historic probability-map form: its "cosine" of two positive scalars is always 1, whatever the maps say
    p = torch.softmax(torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    q = torch.softmax(torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    _, diff_pq = probability_map_terms(p, q)
    _, diff_pp = probability_map_terms(p, p)
    assert diff_pq.item() == pytest.approx(diff_pp.item()) == pytest.approx(4 * 3 / 2048)  # constant: no signal


def test_aim_weights_follow_the_measured_complexity():
    aim = AlignComplexity(num_things=3, momentum=0.5)
    assert aim.weights().tolist() == [1.0, 1.0, 1.0]  # nothing seen yet
    aim.update(torch.tensor([0, 0, 2]), torch.tensor([1.0, 3.0, 6.0]))
    assert aim.zeta.tolist() == [2.0, 0.0, 6.0] and aim.seen.tolist() == [True, False, True]
    assert aim.weights().tolist() == pytest.approx([2 * 2 / 8, 1.0, 2 * 6 / 8])  # mean 1 over the seen classes
    aim.update(torch.tensor([2]), torch.tensor([2.0]))
    assert aim.zeta[2].item() == pytest.approx(0.5 * 6 + 0.5 * 2)
    d = torch.tensor([0.5, 2.0], requires_grad=True)
    self_weighted(d).sum().backward()
    assert d.grad.tolist() == [1.0, 4.0]  # d² with the weight not detached, as released
    assert len(RELEASED_THING_WEIGHTS["v1"]) == len(RELEASED_THING_WEIGHTS["v2"]) == 11
    assert math.isclose(sum(RELEASED_THING_WEIGHTS["v2"]), 55.0)
