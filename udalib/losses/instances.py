"""Instances of a class mask: its 8-connected components, the largest first (BAFFT's instance level, after SIM).

As in BAFFT's ``train_step1.py``: at feature resolution, the components of ``labels == k`` with
8-connectivity (``skimage.measure.label(connectivity=2)`` in the released code; ``scipy.ndimage.label`` with a 3×3
structure here, the same components, numbered alike in raster order), sorted by pixel count, the 10 largest kept.
Equal sizes are ordered as the released ``np.argsort(pixelnum)[::-1]`` orders them whenever its sort keeps ties in
label order (numpy's default sort does for up to 16 components): the later component first. The stable sort here
makes that order hold for any number of components, so which instances enter a bank when the cap of 10 binds is
deterministic. Labelling runs on the CPU over
the small feature map (for ResNet-101 at 1024×512 input: 64×128 pixels), on every thing class of every image; the
chapter measures its cost per iteration. Example::

    masks, classes = instance_masks(pred_tgt, thing_classes, top=10)     # (B, n, h, w), (B, n) with -1 = none
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity in 2-D


def components(mask: np.ndarray, top: int = 10) -> list[np.ndarray]:
    """The `top` largest 8-connected components of a 2-D bool `mask`, largest first (ties: the later one in raster
    order first, as released)."""
    labelled, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return []
    sizes = np.bincount(labelled.ravel(), minlength=n + 1)[1:]
    order = np.argsort(sizes, kind="stable")[::-1][:top]  # ascending, reversed: the released order of ties
    return [labelled == i + 1 for i in order]


def instance_masks(labels: Tensor, classes: Sequence[int], top: int = 10) -> tuple[Tensor, Tensor]:
    """Instances of each of `classes` in each image of `labels` (B, h, w): masks (B, n, h, w) float and their class
    (B, n), padded with empty masks of class -1 so that every image has the same n."""
    found: list[list[tuple[np.ndarray, int]]] = []
    cpu = labels.detach().cpu().numpy()
    for image in cpu:
        found.append([(m, k) for k in classes for m in components(image == k, top)])
    n = max((len(f) for f in found), default=0)
    b, h, w = labels.shape
    masks = torch.zeros(b, n, h, w)
    owner = torch.full((b, n), -1, dtype=torch.long)
    for i, items in enumerate(found):
        for j, (m, k) in enumerate(items):
            masks[i, j] = torch.from_numpy(m)
            owner[i, j] = k
    return masks.to(labels.device), owner.to(labels.device)
