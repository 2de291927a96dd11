"""Lovasz-softmax against hand and brute-force values, and the pixel cross-entropy (source losses)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from udalib.inference import upsample
from udalib.losses.lovasz import lovasz_softmax, lovasz_softmax_logits
from udalib.losses.segmentation import multi_level_ce, seg_ce
from udalib.models.output import SegOutput


def jaccard_loss(fg: set, mispredicted: set) -> float:
    """Delta(M) = 1 - |F minus M| / |F union M| (0 for an empty union)."""
    union = fg | mispredicted
    return 0.0 if not union else 1.0 - len(fg - mispredicted) / len(union)


def lovasz_extension_brute_force(errors: list[float], fg: set) -> float:
    """Lovasz extension as an integral over thresholds: sum_k (v_k - v_{k+1}) * Delta({i : m_i >= v_k})."""
    levels = sorted(set(errors), reverse=True) + [0.0]
    total = 0.0
    for v, v_next in itertools.pairwise(levels):
        total += (v - v_next) * jaccard_loss(fg, {i for i, m in enumerate(errors) if m >= v})
    return total


def reference(probs: torch.Tensor, labels: torch.Tensor, classes="present", ignore=255) -> float:
    p = probs.permute(0, 2, 3, 1).reshape(-1, probs.shape[1]).double()
    y = labels.reshape(-1)
    keep = y != ignore
    p, y = p[keep], y[keep]
    cls = sorted(set(y.tolist())) if classes == "present" else range(probs.shape[1])
    losses = []
    for c in cls:
        fg = {i for i in range(len(y)) if y[i] == c}
        errors = [abs(float(y[i] == c) - p[i, c].item()) for i in range(len(y))]
        losses.append(lovasz_extension_brute_force(errors, fg))
    return sum(losses) / len(losses)


def test_perfect_prediction_gives_zero():
    labels = torch.randint(0, 4, (2, 5, 6))
    probs = F.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    assert lovasz_softmax(probs, labels).item() == 0.0
    assert lovasz_softmax(probs, labels, classes="all").item() == 0.0


def test_binary_case_by_hand():
    # p(class 1) = 0.8, 0.3, 0.4 on pixels with labels 1, 0, 1; both classes have errors 0.2, 0.3, 0.6.
    # class 1 (F = {0, 2}): 0.6 * 1/2 + 0.3 * (2/3 - 1/2) + 0.2 * (1 - 2/3) = 5/12
    # class 0 (F = {1}):    0.6 * 1/2 + 0.3 * (1 - 1/2)   + 0.2 * 0         = 9/20
    p1 = torch.tensor([0.8, 0.3, 0.4])
    probs = torch.stack([1 - p1, p1]).view(1, 2, 1, 3)
    labels = torch.tensor([1, 0, 1]).view(1, 1, 3)
    assert lovasz_softmax(probs, labels).item() == pytest.approx((5 / 12 + 9 / 20) / 2, abs=1e-6)
    assert lovasz_softmax(probs, labels, classes=[1]).item() == pytest.approx(5 / 12, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("classes", ["present", "all"])
def test_matches_brute_force_lovasz_extension(seed, classes):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(2, 3, 2, 3, generator=g), dim=1)
    labels = torch.randint(0, 2, (2, 2, 3), generator=g)  # class 2 absent: 'present' and 'all' differ
    labels[0, 0, 0] = 255
    got = lovasz_softmax(probs, labels, classes=classes)
    assert got.item() == pytest.approx(reference(probs, labels, classes), abs=1e-6)


def test_ignored_pixels_are_excluded():
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(1, 3, 4, 4, generator=g), dim=1)
    labels = torch.randint(0, 3, (1, 4, 4), generator=g)
    labels[0, :2] = 255
    scrambled = probs.clone()
    scrambled[:, :, :2] = torch.softmax(torch.randn(1, 3, 2, 4, generator=g), dim=1)  # ignored rows change
    kept = lovasz_softmax(probs[:, :, 2:], labels[:, 2:])
    assert lovasz_softmax(probs, labels).item() == pytest.approx(kept.item(), abs=1e-7)
    assert lovasz_softmax(scrambled, labels).item() == pytest.approx(kept.item(), abs=1e-7)


def test_all_ignored_gives_zero_with_graph_and_gradients_flow():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = lovasz_softmax(torch.softmax(logits, 1), torch.full((1, 4, 4), 255))
    assert loss.item() == 0.0 and loss.requires_grad
    labels = torch.randint(0, 3, (1, 8, 8))
    loss = lovasz_softmax_logits(logits, labels)  # upsampled 4x4 -> 8x8
    loss.backward()
    assert logits.grad.abs().sum() > 0
    expected = lovasz_softmax(torch.softmax(upsample(logits, (8, 8)), 1), labels)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-7)


def test_seg_ce_upsamples_and_ignores_void():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 5, 3, 4, generator=g)
    labels = torch.randint(0, 5, (2, 9, 12), generator=g)
    labels[:, :3] = 255
    up = F.interpolate(logits, size=(9, 12), mode="bilinear", align_corners=True)
    expected = F.cross_entropy(up, labels, ignore_index=255)
    assert seg_ce(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_seg_ce_without_valid_pixels_is_zero_with_graph():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = seg_ce(logits, torch.full((1, 4, 4), 255))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_multi_level_ce_adds_weighted_aux():
    g = torch.Generator().manual_seed(5)
    main, aux = torch.randn(1, 4, 3, 3, generator=g), torch.randn(1, 4, 3, 3, generator=g)
    labels = torch.randint(0, 4, (1, 6, 6), generator=g)
    out = SegOutput(logits=main, features=main, aux_logits=aux)
    expected = seg_ce(main, labels) + 0.1 * seg_ce(aux, labels)
    assert multi_level_ce(out, labels, 0.1).item() == pytest.approx(expected.item(), rel=1e-6)
    single = SegOutput(logits=main, features=main)
    assert multi_level_ce(single, labels, 0.1).item() == pytest.approx(seg_ce(main, labels).item(), rel=1e-6)
