"""GAN losses for output-space adversarial alignment (AdaptSegNet, ADVENT, global-local).

A discriminator D maps a (B, K, H, W) map (softmax for AdaptSegNet, weighted self-information for
ADVENT) to a (B, 1, h, w) map of raw logits: one cell per patch (the 4x4-stride-2 patch discriminator,
h = H/32) or one per pixel (the 1x1 local discriminator, h = H). Every loss below is averaged over all
of D's output cells, as in the seeds (AdaptSegNet ``train_gta2cityscapes_multi.py``, ``bce_loss``).

Label convention of the seeds: source = 0, target = 1. With ell the per-cell loss,

    L_D   = 1/2 * ell(D(P_s), 0) + 1/2 * ell(D(P_t), 1)       (discriminator; inputs detached by the caller)
    L_adv = ell(D(P_t), 0)                                     (segmentation net: make target look like source)

ell is binary cross-entropy on logits (``kind="bce"``, vanilla GAN, Tsai et al., "Learning to Adapt
Structured Output Space for Semantic Segmentation", CVPR 2018, https://arxiv.org/abs/1802.10349) or the
squared error (``kind="ls"``, least-squares GAN with codes a=0, b=1, Mao et al., "Least Squares
Generative Adversarial Networks", ICCV 2017, https://arxiv.org/abs/1611.04076):

    bce: ell(d, t) = -[t * log sigmoid(d) + (1 - t) * log(1 - sigmoid(d))]
    ls:  ell(d, t) = (d - t)^2

The book explains these in the AdaptSegNet chapter. Example::

    d_loss = discriminator_loss(D(p_src.detach()), D(p_tgt.detach()), kind="bce")
    g_loss = generator_loss(D(p_tgt), kind="bce")   # D's parameters frozen for this term
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SOURCE_LABEL: float = 0.0
"""Domain label of source samples (the seeds' convention)."""
TARGET_LABEL: float = 1.0
"""Domain label of target samples (the seeds' convention)."""
GAN_KINDS: tuple[str, ...] = ("bce", "ls")
"""Accepted values of ``kind``: "bce" (vanilla GAN) and "ls" (least-squares GAN)."""


def _per_cell_loss(d_out: Tensor, target: float, kind: str) -> Tensor:
    """ell(d, target) for every cell of ``d_out``, same shape as ``d_out``, computed in float32 or wider."""
    d = d_out if d_out.dtype in (torch.float32, torch.float64) else d_out.float()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(d, torch.full_like(d, float(target)), reduction="none")
    if kind == "ls":
        return (d - float(target)) ** 2
    raise ValueError(f"unknown GAN loss kind {kind!r}; valid kinds are {', '.join(map(repr, GAN_KINDS))}")


def _broadcast_mask(mask: Tensor, d_out: Tensor) -> Tensor:
    """Bool mask (B, h, w) or (B, 1, h, w) broadcast to d_out's shape (B, C, h, w)."""
    if mask.dim() == d_out.dim() - 1:
        mask = mask.unsqueeze(1)  # (B, h, w) -> (B, 1, h, w)
    if mask.shape[-2:] != d_out.shape[-2:]:
        raise ValueError(
            f"mask spatial size {tuple(mask.shape[-2:])} differs from the discriminator output "
            f"{tuple(d_out.shape[-2:])}; resize the mask (nearest) to the output first"
        )
    try:
        return torch.broadcast_to(mask.to(device=d_out.device, dtype=torch.bool), d_out.shape)
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to {tuple(d_out.shape)}") from err


def gan_loss(d_out: Tensor, target: float, kind: str = "bce", mask: Tensor | None = None) -> Tensor:
    """Mean of ell(D(x), target) over the discriminator's output cells.

    Args:
        d_out: (B, C, h, w) raw discriminator outputs (logits; C is 1 for the seeds' discriminators).
        target: the domain label of every cell, ``SOURCE_LABEL`` (0) or ``TARGET_LABEL`` (1).
        kind: "bce" (binary cross-entropy with logits) or "ls" (mean squared error).
        mask: optional bool tensor (B, h, w) or (B, 1, h, w), True on cells that count; it is broadcast
            over the channel dimension. The loss is then the masked mean
            sum_i m_i * ell_i / sum_i m_i. With no valid cell the result is 0 (still attached to the
            graph, so ``backward`` works), not NaN. Used by the per-pixel local discriminator to drop
            source void pixels (our reading of global-local's paper; its released code has no mask).

    Returns:
        A scalar tensor (float32, or float64 for float64 inputs).
    """
    if mask is None:
        return _per_cell_loss(d_out, target, kind).mean()
    valid = _broadcast_mask(mask, d_out)
    # Zero the dropped cells before and after the loss (torch.where, not a product): a non-finite
    # output on a masked-out cell can then leak neither a NaN value nor a NaN gradient.
    zero = d_out.new_zeros(())
    per_cell = _per_cell_loss(torch.where(valid, d_out, zero), target, kind)
    total = torch.where(valid, per_cell, per_cell.new_zeros(())).sum()
    return total / valid.sum().clamp_min(1).to(per_cell.dtype)


def discriminator_loss(
    d_source: Tensor,
    d_target: Tensor,
    kind: str = "bce",
    mask_source: Tensor | None = None,
    mask_target: Tensor | None = None,
) -> Tensor:
    """L_D = 1/2 * ell(D(P_s), 0) + 1/2 * ell(D(P_t), 1) (AdaptSegNet/ADVENT discriminator step).

    Args:
        d_source: (B, 1, h, w) discriminator logits on *detached* source maps.
        d_target: (B, 1, h, w) discriminator logits on *detached* target maps.
        kind: "bce" or "ls".
        mask_source: optional bool (B, h, w) mask of the source cells that count (e.g. non-void pixels).
        mask_target: optional bool (B, h, w) mask of the target cells that count (e.g. confident pixels).
    """
    return 0.5 * gan_loss(d_source, SOURCE_LABEL, kind, mask_source) + 0.5 * gan_loss(
        d_target, TARGET_LABEL, kind, mask_target
    )


def generator_loss(d_target: Tensor, kind: str = "bce", mask: Tensor | None = None) -> Tensor:
    """L_adv = ell(D(P_t), 0): the segmentation network tries to make target outputs look like source.

    Multiply by lambda_adv (0.001 main, 0.0002 aux in the seeds) in the method. Freeze D's parameters
    (``requires_grad_(False)``) while back-propagating this term, as the seeds do.

    Args:
        d_target: (B, 1, h, w) discriminator logits on target maps (not detached).
        kind: "bce" or "ls".
        mask: optional bool (B, h, w) mask of the cells that count.
    """
    return gan_loss(d_target, SOURCE_LABEL, kind, mask)
