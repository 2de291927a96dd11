"""Procedural pretraining images: random textured shapes on textured backgrounds, densely labelled.

The quick backbone's stand-in for ImageNet. Like ImageNet for Cityscapes, it is neither domain of the pair the book
adapts between: no streets, no perspective, no SynthCity palette or material. Each image is a background layer and
3-8 shape layers composited far-to-near; every layer draws one of seven textures between two random colours, and the
whole image then gets random colour statistics (per-channel gain, brightness, contrast, gamma, sometimes grey, blur,
noise). Every pixel carries two labels: the class of the shape it belongs to (or background), and the texture class
of its layer. Telling a star from a cross needs the layers' spatial context at stride 4; telling stripes from grain
needs local filters: the two dense tasks train the whole dilated backbone.

==========  =====================================================================================================
shapes      disk, triangle, square, ring, star, cross, crescent, bar; radius 12-40 % of the image height, aspect
            0.7-1.4, any rotation, anywhere (partly outside the frame too)
textures    solid, stripes, checker, dots, blotches (smooth noise), grain (pixel noise), gradient; frequencies
            3-10 cycles per image height, any orientation; two colours at least 0.25 apart in each channel
colour      gain 0.6-1.4 per channel, brightness ±0.15, contrast 0.6-1.4, gamma 0.7-1.4, grey with p 0.15,
            a 3x3 blur with p 0.3, Gaussian noise up to σ 0.05
==========  =====================================================================================================

Everything is a function of a ``torch.Generator`` (CPU): the same seed draws the same batches on any machine.

Example::

    task = ProceduralTask(size=(64, 128))
    gen = torch.Generator().manual_seed(0)
    images, shapes, textures = procedural_batch(task, 8, gen)
    images.shape     # (8, 3, 64, 128), RGB in [0, 1]
    shapes.shape     # (8, 64, 128), int64 in 0..8 (0: background), SHAPE_CLASSES
    textures.shape   # (8, 64, 128), int64 in 0..6, TEXTURES
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

SHAPES = ("disk", "triangle", "square", "ring", "star", "cross", "crescent", "bar")
#: Dense shape labels: 0 is the background layer, k > 0 is SHAPES[k - 1].
SHAPE_CLASSES = ("background", *SHAPES)
TEXTURES = ("solid", "stripes", "checker", "dots", "blotches", "grain", "gradient")


@dataclass(frozen=True)
class ProceduralTask:
    """What the images look like (the recipe stores it).

    size: (H, W) of the images; shapes_per_image: (min, max) shape layers over the background; radius: (min, max)
    shape radius as a fraction of H; frequency: (min, max) texture cycles per image height.
    """

    size: tuple[int, int] = (64, 128)
    shapes_per_image: tuple[int, int] = (3, 8)
    radius: tuple[float, float] = (0.12, 0.4)
    frequency: tuple[float, float] = (3.0, 10.0)

    def __post_init__(self) -> None:
        h, w = self.size
        if not (isinstance(h, int) and isinstance(w, int) and h >= 8 and w >= 8):
            raise ValueError(f"size must be (height, width) of at least 8 pixels each, got {self.size!r}")
        low, high = self.shapes_per_image
        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
            raise ValueError(f"shapes_per_image must be (min, max) with 1 <= min <= max, got {self.shapes_per_image!r}")
        for name in ("radius", "frequency"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be (min, max) with 0 < min <= max, got {getattr(self, name)!r}")

    @property
    def num_shape_classes(self) -> int:
        return len(SHAPE_CLASSES)

    @property
    def num_texture_classes(self) -> int:
        return len(TEXTURES)


def _uniform(shape: tuple[int, ...], low: float, high: float, gen: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen)


def _shape_mask(kind: int, u: Tensor, v: Tensor) -> Tensor:
    """Inside SHAPES[kind], in the shape's own frame (u, v), where the unit circle is its size."""
    r = torch.sqrt(u * u + v * v)
    phi = torch.atan2(v, u)
    name = SHAPES[kind]
    if name == "disk":
        return r < 1
    if name == "triangle":  # a regular triangle of circumradius 1.2: r cos(phi mod 120° - 60°) < 1.2 cos 60°
        sector = 2 * math.pi / 3
        return r * torch.cos(torch.remainder(phi, sector) - sector / 2) < 1.2 * math.cos(sector / 2)
    if name == "square":
        return torch.maximum(u.abs(), v.abs()) < 0.85
    if name == "ring":
        return (r < 1) & (r > 0.6)
    if name == "star":  # five points
        return r < 0.55 + 0.45 * torch.cos(5 * phi)
    if name == "cross":
        return ((u.abs() < 0.3) & (v.abs() < 1)) | ((v.abs() < 0.3) & (u.abs() < 1))
    if name == "crescent":
        return (r < 1) & ((u - 0.5) ** 2 + v * v > 0.64)
    return (u.abs() < 1.3) & (v.abs() < 0.3)  # bar


def _texture_field(kind: int, x: Tensor, y: Tensor, n: int, task: ProceduralTask, gen: torch.Generator) -> Tensor:
    """(n, H, W) mixing weights in [0, 1] between a layer's two colours for TEXTURES[kind]; x, y: (H, W) in units
    of the image height."""
    h, w = task.size
    angle = _uniform((n, 1, 1), 0, math.pi, gen)
    freq = _uniform((n, 1, 1), *task.frequency, gen)
    phase = _uniform((n, 1, 1), 0, 2 * math.pi, gen)
    along = x * torch.cos(angle) + y * torch.sin(angle)  # (n, H, W)
    across = -x * torch.sin(angle) + y * torch.cos(angle)
    name = TEXTURES[kind]
    if name == "solid":
        return torch.zeros(n, h, w)
    if name == "stripes":
        return (torch.sin(2 * math.pi * freq * along + phase) > 0).float()
    if name == "checker":
        return (torch.sin(2 * math.pi * freq * along + phase) * torch.sin(2 * math.pi * freq * across) > 0).float()
    if name == "dots":
        return (torch.cos(2 * math.pi * freq * along + phase) + torch.cos(2 * math.pi * freq * across) > 1.2).float()
    if name == "blotches":  # smooth noise of about `freq` blobs per height, thresholded at zero
        cells = max(2, round(task.frequency[0]))
        coarse = torch.randn((n, 1, cells + 1, round((cells + 1) * w / h)), generator=gen)
        return (F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[:, 0] > 0).float()
    if name == "grain":
        return torch.rand((n, h, w), generator=gen)
    # gradient: a ramp along `angle` over a random length of 0.3-1.5 image heights
    length = _uniform((n, 1, 1), 0.3, 1.5, gen)
    centre = _uniform((n, 1, 1), 0, w / h, gen) * torch.cos(angle) + _uniform((n, 1, 1), 0, 1, gen) * torch.sin(angle)
    return ((along - centre) / length + 0.5).clamp(0, 1)


def _colour_statistics(images: Tensor, gen: torch.Generator) -> Tensor:
    """Per-image random gain per channel, brightness, contrast, gamma, grey, blur and noise; (B, 3, H, W) in [0, 1]."""
    b = images.shape[0]
    x = images * _uniform((b, 3, 1, 1), 0.6, 1.4, gen) + _uniform((b, 1, 1, 1), -0.15, 0.15, gen)
    x = (x - 0.5) * _uniform((b, 1, 1, 1), 0.6, 1.4, gen) + 0.5
    x = x.clamp(0, 1) ** _uniform((b, 1, 1, 1), 0.7, 1.4, gen)
    grey = torch.rand((b, 1, 1, 1), generator=gen) < 0.15
    x = torch.where(grey, x.mean(1, keepdim=True).expand_as(x), x)
    blur = torch.rand((b, 1, 1, 1), generator=gen) < 0.3
    x = torch.where(blur, F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False), x)
    x = x + torch.randn(x.shape, generator=gen) * _uniform((b, 1, 1, 1), 0, 0.05, gen)
    return x.clamp(0, 1)


def procedural_batch(task: ProceduralTask, batch: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """`batch` images with their dense labels: (B, 3, H, W) RGB in [0, 1], shape classes (B, H, W) and texture
    classes (B, H, W), both int64 (see the module docstring)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    h, w = task.size
    layers = task.shapes_per_image[1] + 1  # layer 0 is the background
    y = torch.linspace(0.5 / h, 1 - 0.5 / h, h).view(h, 1).expand(h, w)
    x = (torch.linspace(0.5 / w, 1 - 0.5 / w, w) * (w / h)).view(1, w).expand(h, w)

    texture = torch.randint(len(TEXTURES), (batch, layers), generator=gen)
    fields = torch.empty(batch, layers, h, w)
    for kind in range(len(TEXTURES)):  # each texture drawn only for the layers that have it
        where = (texture == kind).nonzero(as_tuple=True)
        if where[0].numel():
            fields[where] = _texture_field(kind, x, y, where[0].numel(), task, gen)
    low = torch.rand((batch, layers, 3, 1, 1), generator=gen)
    high = torch.remainder(low + 0.5 + _uniform((batch, layers, 3, 1, 1), -0.25, 0.25, gen), 1.0)
    colours = low + (high - low) * fields[:, :, None]  # (B, L, 3, H, W)

    shape = torch.randint(len(SHAPES), (batch, layers), generator=gen)
    count = torch.randint(task.shapes_per_image[0], task.shapes_per_image[1] + 1, (batch, 1), generator=gen)
    active = torch.arange(layers).view(1, layers) <= count  # layer 0 and `count` shape layers
    centre_x = _uniform((batch, layers, 1, 1), 0, w / h, gen)
    centre_y = _uniform((batch, layers, 1, 1), 0, 1, gen)
    radius = _uniform((batch, layers, 1, 1), *task.radius, gen)
    aspect = _uniform((batch, layers, 1, 1), 0.7, 1.4, gen).sqrt()
    turn = _uniform((batch, layers, 1, 1), 0, 2 * math.pi, gen)
    dx, dy = x - centre_x, y - centre_y  # (B, L, H, W)
    u = (dx * torch.cos(turn) + dy * torch.sin(turn)) / (radius * aspect)
    v = (-dx * torch.sin(turn) + dy * torch.cos(turn)) / (radius / aspect)
    inside = torch.zeros(batch, layers, h, w, dtype=torch.bool)
    for kind in range(len(SHAPES)):
        where = (shape == kind).nonzero(as_tuple=True)
        if where[0].numel():
            inside[where] = _shape_mask(kind, u[where], v[where])
    inside[:, 0] = True
    inside &= active[:, :, None, None]

    # far-to-near: the last layer that covers a pixel is the one seen
    top = (inside * torch.arange(layers).view(1, layers, 1, 1)).argmax(1)  # (B, H, W)
    images = colours.gather(1, top[:, None, None].expand(batch, 1, 3, h, w))[:, 0]
    shapes = torch.where(top == 0, 0, shape.gather(1, top.flatten(1)).view(batch, h, w) + 1)
    textures = texture.gather(1, top.flatten(1)).view(batch, h, w)
    return _colour_statistics(images, gen), shapes, textures


__all__ = ["SHAPES", "SHAPE_CLASSES", "TEXTURES", "ProceduralTask", "procedural_batch"]
