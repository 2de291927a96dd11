"""GAN losses: known values, masked means, the seeds' label convention."""

import math

import pytest
import torch

from udalib.losses.adversarial import (
    SOURCE_LABEL,
    TARGET_LABEL,
    discriminator_loss,
    gan_loss,
    generator_loss,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_labels_follow_the_seeds():
    assert SOURCE_LABEL == 0.0 and TARGET_LABEL == 1.0


def test_bce_of_zero_logit_is_log2():
    d = torch.zeros(2, 1, 3, 4)
    assert gan_loss(d, 0.0, "bce").item() == pytest.approx(math.log(2), abs=1e-7)
    assert gan_loss(d, 1.0, "bce").item() == pytest.approx(math.log(2), abs=1e-7)


def test_ls_is_mean_squared_error():
    d = torch.full((1, 1, 2, 2), 0.5)
    assert gan_loss(d, 1.0, "ls").item() == pytest.approx(0.25, abs=1e-7)
    d = torch.tensor([[[[0.0, 2.0], [1.0, -1.0]]]])
    assert gan_loss(d, 1.0, "ls").item() == pytest.approx((1 + 1 + 0 + 4) / 4, abs=1e-7)


def test_bce_matches_hand_values():
    d = torch.tensor([[[[-1.0, 3.0]]]])
    # ell(d, 0) = softplus(d), ell(d, 1) = softplus(-d)
    assert gan_loss(d, 0.0).item() == pytest.approx((softplus(-1) + softplus(3)) / 2, rel=1e-6)
    assert gan_loss(d, 1.0).item() == pytest.approx((softplus(1) + softplus(-3)) / 2, rel=1e-6)


@pytest.mark.parametrize("kind", ["bce", "ls"])
@pytest.mark.parametrize("with_channel", [False, True])
def test_masked_mean_is_mean_over_selected_cells(kind, with_channel):
    g = torch.Generator().manual_seed(0)
    d = torch.randn(2, 1, 5, 6, generator=g)
    mask = torch.rand(2, 5, 6, generator=g) > 0.4
    expected = gan_loss(d[mask[:, None]].view(1, 1, 1, -1), 1.0, kind)
    got = gan_loss(d, 1.0, kind, mask[:, None] if with_channel else mask)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert gan_loss(d, 1.0, kind, torch.ones_like(mask)).item() == pytest.approx(
        gan_loss(d, 1.0, kind).item(), rel=1e-6
    )


def test_masked_out_cells_cannot_leak_nan_or_gradient():
    d = torch.tensor([[[[0.0, float("inf")]]]], requires_grad=True)
    mask = torch.tensor([[[True, False]]])
    loss = gan_loss(d, 0.0, "ls", mask)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(d.grad, torch.zeros_like(d))


@pytest.mark.parametrize("kind", ["bce", "ls"])
def test_empty_mask_gives_zero_with_a_graph(kind):
    d = torch.randn(1, 1, 3, 3, requires_grad=True)
    loss = gan_loss(d, 0.0, kind, torch.zeros(1, 3, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(d.grad, torch.zeros_like(d))


def test_discriminator_and_generator_losses_by_hand():
    d_s = torch.tensor([[[[0.0, 2.0]]]])
    d_t = torch.tensor([[[[-1.0, 1.0]]]])
    bce_d = 0.5 * (math.log(2) + softplus(2)) / 2 + 0.5 * (softplus(1) + softplus(-1)) / 2
    assert discriminator_loss(d_s, d_t, "bce").item() == pytest.approx(bce_d, rel=1e-6)
    # LS: 1/2 mean((0-0)^2, (2-0)^2) + 1/2 mean((-1-1)^2, (1-1)^2) = 1 + 1
    assert discriminator_loss(d_s, d_t, "ls").item() == pytest.approx(2.0, rel=1e-6)
    # generator: target outputs against the source label 0
    assert generator_loss(d_t, "bce").item() == pytest.approx((softplus(-1) + softplus(1)) / 2, rel=1e-6)
    assert generator_loss(d_t, "ls").item() == pytest.approx(1.0, rel=1e-6)


def test_discriminator_loss_masks_source_only():
    d_s = torch.tensor([[[[0.0, 2.0]]]])
    d_t = torch.tensor([[[[-1.0, 1.0]]]])
    mask_s = torch.tensor([[[True, False]]])
    expected = 0.5 * 0.0 + 0.5 * (4.0 + 0.0) / 2  # LS: only the first source cell counts
    assert discriminator_loss(d_s, d_t, "ls", mask_source=mask_s).item() == pytest.approx(expected, rel=1e-6)


def test_generator_gradient_pushes_target_towards_source_label():
    d_t = torch.tensor([[[[0.5, 2.0]]]], requires_grad=True)
    generator_loss(d_t, "bce").backward()
    assert (d_t.grad > 0).all()  # descending lowers D(target), i.e. towards "source"


def test_unknown_kind_names_the_valid_ones():
    with pytest.raises(ValueError, match="'bce'.*'ls'"):
        gan_loss(torch.zeros(1, 1, 1, 1), 0.0, "wgan")


def test_mask_of_wrong_size_is_rejected():
    with pytest.raises(ValueError, match="spatial size"):
        gan_loss(torch.zeros(1, 1, 4, 4), 0.0, mask=torch.ones(1, 2, 2, dtype=torch.bool))
