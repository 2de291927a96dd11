"""Fourier Domain Adaptation (FDA): a source image with the low-frequency amplitude spectrum of a target image.

Yang and Soatto, "FDA: Fourier Domain Adaptation for Semantic Segmentation", CVPR 2020,
https://arxiv.org/abs/2004.05498. With 𝓕 the 2-D Fourier transform of each channel, A its amplitude and Φ its
phase, and M_β the centred (2b+1)×(2b+1) square of the (shifted) spectrum, b = ⌊β·min(H, W)⌋:

    x_{s→t} = 𝓕⁻¹( [ M_β ∘ A(x_t) + (1 − M_β) ∘ A(x_s) ] · e^{i·Φ(x_s)} )

The low frequencies carry the global colour, illumination and smooth shading, which the target lends the source;
the phase, which carries the edges and layout (the labels), stays the source's. β is small (0.01–0.09).

The released code (YanchaoYang/FDA ``utils/__init__.py``) has two windows. ``low_freq_mutate_np`` (used by
``FDA_source_to_target_np``) swaps the centred (2b+1)² square, which always holds the zero frequency: even at
b = 0 (β = 0.01 on images under 100 pixels high) it swaps the mean colour. ``low_freq_mutate`` (the torch
version, used by ``train.py``) swaps four b×b corners of the unshifted spectrum, a 2b×2b window of frequencies
−b … b−1 that is empty at b = 0 and one-sided (it takes −b but not +b). udalib follows the numpy window: it is
symmetric, so the result stays a real image, and it never leaves the image unchanged (a run that wants no FDA
keeps ``DataConfig.source_aug = "none"``, which has no FDA step). An image-level alignment that any method can
apply to its source images. Example::

    translated = fda_source_to_target(source_image, target_image, beta=0.01)   # (3, H, W) floats, same size
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def low_frequency_mask(height: int, width: int, beta: float) -> Tensor:
    """(H, W) bool: the centred (2b+1)² square of the shifted spectrum, b = ⌊β·min(H, W)⌋; at b = 0 the zero
    frequency alone (the mean colour), as ``low_freq_mutate_np`` of the released code."""
    b = math.floor(min(height, width) * beta)
    mask = torch.zeros(height, width, dtype=torch.bool)
    ch, cw = height // 2, width // 2  # the zero frequency after fftshift
    mask[max(ch - b, 0) : ch + b + 1, max(cw - b, 0) : cw + b + 1] = True
    return mask


def fda_source_to_target(source: Tensor, target: Tensor, beta: float = 0.01) -> Tensor:
    """`source` (C, H, W) with the low-frequency amplitude of `target` (C, H, W, the same size), as floats in the
    source's value range (not clipped: clip or normalise after)."""
    if source.shape != target.shape:
        raise ValueError(f"FDA needs images of one size, got {tuple(source.shape)} and {tuple(target.shape)}")
    if not 0 <= beta < 0.5:
        raise ValueError(f"FDA's beta must be in [0, 0.5), got {beta}")
    fs = torch.fft.fftshift(torch.fft.fft2(source.float()), dim=(-2, -1))
    ft = torch.fft.fftshift(torch.fft.fft2(target.float()), dim=(-2, -1))
    mask = low_frequency_mask(source.shape[-2], source.shape[-1], beta)
    amplitude = torch.where(mask, ft.abs(), fs.abs())
    mixed = torch.polar(amplitude, fs.angle())
    return torch.fft.ifft2(torch.fft.ifftshift(mixed, dim=(-2, -1))).real
