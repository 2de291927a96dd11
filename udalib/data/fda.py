"""Fourier Domain Adaptation (FDA): a source image with the low-frequency amplitude spectrum of a target image.

Yang and Soatto, "FDA: Fourier Domain Adaptation for Semantic Segmentation", CVPR 2020,
https://arxiv.org/abs/2004.05498. With 𝓕 the 2-D Fourier transform of each channel, A its amplitude and Φ its
phase, and M_β the centred square of half-width ⌊β·min(H, W)⌋ of the (shifted) spectrum:

    x_{s→t} = 𝓕⁻¹( [ M_β ∘ A(x_t) + (1 − M_β) ∘ A(x_s) ] · e^{i·Φ(x_s)} )

The low frequencies carry the global colour, illumination and smooth shading, which the target lends the source;
the phase, which carries the edges and layout (the labels), stays the source's. β is small (0.01–0.09); β = 0
leaves the image unchanged. An image-level alignment that any method can apply to its source images. Example::

    translated = fda_source_to_target(source_image, target_image, beta=0.01)   # (3, H, W) floats, same size
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def low_frequency_mask(height: int, width: int, beta: float) -> Tensor:
    """(H, W) bool: the centred (2b+1)² square of the shifted spectrum, b = ⌊β·min(H, W)⌋ (empty for b = 0)."""
    b = math.floor(min(height, width) * beta)
    mask = torch.zeros(height, width, dtype=torch.bool)
    if b > 0:
        ch, cw = height // 2, width // 2
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
