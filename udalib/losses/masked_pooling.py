"""Masked average pooling: one feature vector per class (or per instance) of an image, BAFFT's representations.

Yuan, Zhao, Shao, Yuan, Wang, "Birds of a Feather Flock Together: Category-Divergence Guidance for Domain Adaptive
Segmentation", IEEE TIP 31, 2022 (released ``utils/functions.py:global_avg_pool``), after SIM (Wang et al., CVPR 2020):

    pool(F, M) = Σ_x F(x)·M(x) / max(Σ_x M(x), 1e-12)        F (D, h, w) features, M (h, w) a mask

vectorised here over a batch and over many masks at once (one einsum, no loop over pixels or images). Source
representations use only correctly classified pixels (:func:`correct_labels`) and are kept only when the classifier
applied to the pooled vector predicts their class (:func:`classifier_agrees`, the "self-consistency filter").
Example::

    masks = class_masks(correct_labels(y_src, pred_src), classes=stuff)       # (B, S, h, w)
    vectors = masked_average_pool(out_src.features, masks)                    # (B, S, D)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from udalib.config import IGNORE_INDEX


def masked_average_pool(features: Tensor, masks: Tensor) -> Tensor:
    """(B, M, D) mean feature under each of M masks of each image; `features` (B, D, h, w), `masks` (B, M, h, w)
    (0/1 or weights, detached). An empty mask gives a zero vector."""
    masks = masks.detach().to(features.dtype)
    sums = torch.einsum("bdhw,bmhw->bmd", features, masks)
    return sums / masks.sum(dim=(2, 3)).clamp(min=1e-12)[..., None]


def class_masks(labels: Tensor, classes: Sequence[int]) -> Tensor:
    """(B, len(classes), h, w) float masks of `labels` (B, h, w) == each class."""
    ids = torch.as_tensor(list(classes), device=labels.device)
    return (labels[:, None] == ids[None, :, None, None]).float()


def correct_labels(labels: Tensor, predictions: Tensor) -> Tensor:
    """`labels` (B, h, w) with every pixel the prediction gets wrong set to 255: only correct source pixels count."""
    return torch.where(predictions == labels, labels, torch.full_like(labels, IGNORE_INDEX))


def classifier_agrees(classifier: nn.Module, vectors: Tensor, classes: Tensor) -> Tensor:
    """(N,) bool: the segmentation head applied to each pooled (N, D) vector (as a 1×1 feature map) predicts its
    class (N,). The head sees the vectors detached, in its own dtype: the filter decides, it does not train."""
    dtype = next(classifier.parameters()).dtype
    logits = classifier(vectors.detach().to(dtype)[:, :, None, None])  # (N, K, 1, 1)
    return logits[:, :, 0, 0].argmax(dim=1) == classes
