"""Fourier Domain Adaptation: the target's low frequencies, the source's phase."""

from __future__ import annotations

import pytest
import torch

from udalib.data.fda import fda_source_to_target, low_frequency_mask


def test_the_window_is_the_centred_square_and_holds_the_mean_colour_even_at_b_zero():
    m = low_frequency_mask(32, 48, 0.1)  # b = 3: a 7 x 7 square around (16, 24)
    assert m.sum() == 49 and m[16, 24] and m[13, 21] and not m[12, 24]
    m0 = low_frequency_mask(32, 48, 0.01)  # b = floor(0.32) = 0: the zero frequency alone (released numpy window)
    assert m0.sum() == 1 and m0[16, 24]
    # by hand: swapping only the zero frequency moves every pixel by the difference of the means, 200 - 50
    src = torch.zeros(3, 32, 48)
    src[:, :, 24:] = 100.0
    tgt = torch.full((3, 32, 48), 200.0)
    torch.testing.assert_close(fda_source_to_target(src, tgt, beta=0.01), src + 150.0, atol=1e-3, rtol=0)


def test_the_global_colour_comes_from_the_target_and_the_edges_stay_the_sources():
    src = torch.zeros(3, 32, 32)
    src[:, :, 16:] = 100.0  # a vertical edge, dark left, bright right (mean 50)
    tgt = torch.full((3, 32, 32), 200.0)  # a flat, bright target
    out = fda_source_to_target(src, tgt, beta=0.05)
    assert out.mean().item() == pytest.approx(200.0, abs=1e-3)  # the DC term (the mean colour) is the target's
    jump = (out[:, :, 16] - out[:, :, 15]).mean().item()  # the sharp edge lives in the high frequencies: kept
    assert jump > 50 and (out[:, :, 16:].mean() - out[:, :, :16].mean()).item() > 0
    with pytest.raises(ValueError, match="one size"):
        fda_source_to_target(src, tgt[:, :16], beta=0.05)


def test_a_run_can_give_its_source_images_target_low_frequencies(tmp_path):
    import dataclasses

    from udalib.data.domains import build_domains
    from udalib.data.synthcity import SynthCitySpec, generate
    from udalib.presets import resolve

    root = generate(tmp_path / "sc", SynthCitySpec(height=32, width=64, n_source=2, n_target_train=2, n_target_val=1))
    cfg = resolve("source_only", "quick", data_root=str(root))
    plain = build_domains(cfg).labelled[0][0]
    with_fda = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source_aug="fda", fda_beta=0.05))
    torch.manual_seed(0)
    styled = build_domains(with_fda).labelled[0][0]
    assert styled.shape == plain.shape and not torch.equal(styled, plain)
    assert (styled.mean(dim=(1, 2)) - plain.mean(dim=(1, 2))).abs().max() > 0.01  # the colour moved
    with pytest.raises(ValueError, match=r"fda_beta must be in \(0, 0.5\)"):
        dataclasses.replace(cfg.data, source_aug="fda", fda_beta=0.7)
    with pytest.raises(ValueError, match="fda_beta is the fda pipeline's window, but source_aug is 'none'"):
        dataclasses.replace(cfg.data, fda_beta=0.05)
