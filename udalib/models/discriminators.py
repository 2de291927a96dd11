"""Domain discriminators on segmentation outputs (Tsai et al., CVPR 2018; Vu et al., CVPR 2019).

Both take a (B, K, H, W) map built from the segmenter's upsampled logits (the softmax for
AdaptSegNet, the weighted self-information for ADVENT) and return (B, 1, h, w) raw scores, to be
fed to BCE-with-logits or an MSE (LS-GAN) loss averaged over all cells. There is no normalisation
and no sigmoid. Both are ``nn.Sequential`` with convs at indices 0, 2, 4, 6, 8, the layout of
ADVENT's ``get_fc_discriminator``, so its discriminator checkpoints load as is.

Example::

    d = PatchDiscriminator(19)
    d(torch.softmax(torch.randn(1, 19, 512, 1024), 1)).shape  # (1, 1, 16, 32)
    PixelDiscriminator(19)(torch.randn(1, 19, 64, 128)).shape  # (1, 1, 64, 128)
"""

from __future__ import annotations

from torch import nn


def _conv_stack(in_channels: int, ndf: int, kernel_size: int, stride: int, padding: int) -> list[nn.Module]:
    """K -> ndf -> 2ndf -> 4ndf -> 8ndf -> 1 convs with LeakyReLU(0.2) after all but the last."""
    widths = [in_channels, ndf, ndf * 2, ndf * 4, ndf * 8]
    layers: list[nn.Module] = []
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        layers += [
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
        ]
    layers.append(nn.Conv2d(widths[-1], 1, kernel_size, stride=stride, padding=padding))
    return layers


class PatchDiscriminator(nn.Sequential):
    """AdaptSegNet's fully convolutional ("FC") discriminator (Tsai et al., CVPR 2018, Sec. 3.1).

    Five 4x4 convs with stride 2, padding 1 and bias; widths K -> 64 -> 128 -> 256 -> 512 -> 1
    for ndf=64 (AdaptSegNet ``model/discriminator.py:FCDiscriminator``). Each conv maps a side s to
    floor(s / 2), so (B, K, H, W) -> (B, 1, ~H/32, ~W/32): 512x1024 -> 16x32, 720x1280 -> 22x40.
    Each output cell judges one patch (receptive field 94x94 input pixels).
    """

    def __init__(self, in_channels: int, ndf: int = 64) -> None:
        super().__init__(*_conv_stack(in_channels, ndf, kernel_size=4, stride=2, padding=1))


class PixelDiscriminator(nn.Sequential):
    """Per-pixel discriminator of the Global-Local code release (Yarram et al., ICASSP 2022).

    The same widths and activations as :class:`PatchDiscriminator`, but 1x1 convs with stride 1
    (global-local's ``model/discriminator.py``): every pixel's K-vector is classified as source or target on its own, so
    (B, K, H, W) -> (B, 1, H, W).
    """

    def __init__(self, in_channels: int, ndf: int = 64) -> None:
        super().__init__(*_conv_stack(in_channels, ndf, kernel_size=1, stride=1, padding=0))


__all__ = ["PatchDiscriminator", "PixelDiscriminator"]
