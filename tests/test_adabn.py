"""AdaBN control: BN statistics re-estimated on target images, nothing else changed."""

import pytest
import torch
from torch import nn

from udalib.adabn import adapt_batchnorm
from udalib.models import SmallDeepLab


def test_statistics_are_the_average_over_target_batches():
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1))
    net[0].momentum = 0.3
    batches = [torch.randn(2, 3, 5, 7) * 2 + 1 for _ in range(3)]
    conv = net[1].weight.clone()
    seen = adapt_batchnorm(net, [(b, None) for b in batches])
    assert seen == 6
    bn = net[0]
    expect_mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    expect_var = torch.stack([b.var((0, 2, 3), unbiased=True) for b in batches]).mean(0)
    torch.testing.assert_close(bn.running_mean, expect_mean)
    torch.testing.assert_close(bn.running_var, expect_var)
    assert bn.num_batches_tracked.item() == 3
    assert bn.momentum == 0.3 and not net.training
    assert torch.equal(net[1].weight, conv)


def test_frozen_batchnorm_model_is_re_estimated_too():
    model = SmallDeepLab(19, bn_mode="affine_frozen").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapt_batchnorm(model, [torch.randn(2, 3, 32, 64) + 3])
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)
    assert not model.training


def test_refusals():
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        adapt_batchnorm(nn.Conv2d(3, 3, 1), [torch.randn(1, 3, 4, 4)])
    with pytest.raises(ValueError, match="no target images"):
        adapt_batchnorm(nn.BatchNorm2d(3), [])


def test_a_model_with_trained_source_statistics_gets_the_target_estimate_alone():
    """A trained network's BN has counted many source batches (``num_batches_tracked``); with ``momentum=None``
    and no reset, three target batches would weigh 3/(n + 3) next to them. AdaBN's statistics are the target's."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1)).train()
    for _ in range(200):  # source images: mean 5, std 3
        net(torch.randn(4, 3, 5, 7) * 3 + 5)
    source_mean, source_var = net[0].running_mean.clone(), net[0].running_var.clone()
    assert net[0].num_batches_tracked.item() == 200
    torch.testing.assert_close(source_mean, torch.full((3,), 5.0), atol=0.3, rtol=0)
    batches = [torch.randn(2, 3, 5, 7) * 0.5 - 2 for _ in range(3)]  # target images: mean -2, std 0.5
    adapt_batchnorm(net, batches)
    bn = net[0]
    torch.testing.assert_close(bn.running_mean, torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([b.var((0, 2, 3)) for b in batches]).mean(0))
    assert bn.num_batches_tracked.item() == 3
    assert (bn.running_mean - source_mean).abs().min() > 6 and (bn.running_var / source_var).max() < 0.1
