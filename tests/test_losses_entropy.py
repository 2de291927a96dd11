"""ADVENT's self-information map, entropy map and MinEnt loss."""

import math

import numpy as np
import pytest
import torch

from udalib.losses.entropy import entropy_map, minent_loss, self_information


def random_prob(b=2, c=5, h=3, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(b, c, h, w, generator=g, dtype=torch.float64), dim=1)


def test_self_information_matches_numpy():
    prob = random_prob()
    p = prob.numpy()
    expected = -p * np.log2(p + 1e-30) / np.log2(p.shape[1])
    got = self_information(prob)
    assert got.shape == prob.shape  # per channel, not summed
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-15)
    # float32 in, float32 out, same values
    np.testing.assert_allclose(self_information(prob.float()).numpy(), expected, rtol=1e-5, atol=1e-7)


def test_self_information_channel_bound():
    c = 19
    prob = torch.full((1, c, 1, 1), 1 / c)
    prob[0, 0] = math.exp(-1)  # -p log p is largest at p = 1/e
    bound = 1 / (math.e * math.log(2) * math.log2(c))
    assert self_information(prob)[0, 0].item() == pytest.approx(bound, rel=1e-6)
    assert self_information(random_prob(c=c)).max().item() <= bound + 1e-12


def test_entropy_map_range_and_extremes():
    prob = random_prob(c=19)
    ent = entropy_map(prob)
    assert ent.shape == (2, 3, 4)
    assert ent.min() >= 0 and ent.max() <= 1
    one_hot = torch.zeros(1, 19, 2, 2)
    one_hot[:, 7] = 1
    assert torch.equal(entropy_map(one_hot), torch.zeros(1, 2, 2))
    uniform = torch.full((1, 19, 2, 2), 1 / 19)
    assert torch.allclose(entropy_map(uniform), torch.ones(1, 2, 2), atol=1e-6)


def test_minent_loss_known_values():
    # two classes, logits (0, log 3): p = (1/4, 3/4); entropy = H(1/4) in bits (log2 2 = 1)
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 1, 0, 0] = math.log(3)  # pixel 0: p = (1/4, 3/4); pixel 1: uniform -> 1
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert minent_loss(logits).item() == pytest.approx((h + 1) / 2, rel=1e-6)


def test_minent_loss_equals_mean_entropy_map_and_is_stable():
    g = torch.Generator().manual_seed(1)
    logits = 4 * torch.randn(2, 19, 6, 7, generator=g)
    expected = entropy_map(torch.softmax(logits.double(), dim=1)).mean()
    assert minent_loss(logits).item() == pytest.approx(expected.item(), rel=1e-6)
    huge = torch.zeros(1, 3, 1, 1)
    huge[0, 0] = 1e4  # saturated softmax: entropy 0, no NaN
    logits = huge.clone().requires_grad_(True)
    loss = minent_loss(logits)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and torch.isfinite(logits.grad).all()


def test_minent_gradient_sharpens_prediction():
    logits = torch.tensor([0.5, 0.0, -0.5]).view(1, 3, 1, 1).requires_grad_(True)
    minent_loss(logits).backward()
    assert logits.grad[0, 0] < 0  # the top class is pushed up
