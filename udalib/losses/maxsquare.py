"""MaxSquare and image-wise class-balanced MaxSquare (IW-MaxSquare), target-confidence losses.

Chen, Xue, Cai, "Domain Adaptation for Semantic Segmentation with Maximum Squares Loss", ICCV 2019,
https://arxiv.org/abs/1909.13589; the IW form is the one UDAclustering copies (UDAclustering
``utils/losses.py``, from MaxSquareLoss ``utils/loss.py``). For target probabilities P of shape (B, C, H, W):

    MaxSquare     L_ms = -(1/2) · mean_{b,c,h,w} P[b,c,h,w]^2
    IW-MaxSquare  L_iw = -(1/(B·C)) · Σ_b Σ_{h,w} Σ_c w_b(h,w) · P[b,c,h,w]^2,
                  w_b(h,w) = 1 / max(N_{b,ŷ}^r · N_b^(1−r), 1),   ŷ = argmax_c P[b,:,h,w]

where N_{b,c} is the number of pixels of image b predicted as c, N_b = H·W and r the ratio (r = 0: uniform
1/N_b). Unlike entropy, the square's gradient does not grow without bound as a pixel grows confident, so easy
classes dominate less; the weights (detached) give rare predicted classes more of the loss. Example::

    prob = torch.softmax(upsample(out_t.logits, image.shape[-2:]), dim=1)
    loss = iw_maxsquare_loss(prob, ratio=0.2)       # a scalar to minimise
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def maxsquare_loss(prob: Tensor) -> Tensor:
    """L_ms = -mean(P^2)/2 over every (b, c, h, w) of the (B, C, H, W) probabilities P (the released loss)."""
    return -prob.float().pow(2).mean() / 2


def iw_weights(prob: Tensor, ratio: float) -> Tensor:
    """The image-wise class-balancing weights w_b(h, w) of (B, C, H, W) probabilities: (B, 1, H, W), detached."""
    if not 0 <= ratio <= 1:
        raise ValueError(f"the IW ratio must be in [0, 1], got {ratio}")
    b, c, h, w = prob.shape
    pred = prob.detach().argmax(dim=1)  # (B, H, W)
    counts = F.one_hot(pred.reshape(b, -1), c).sum(dim=1).float()  # (B, C): N_{b,c}
    per_class = 1 / torch.clamp(counts.pow(ratio) * float(h * w) ** (1 - ratio), min=1.0)
    return per_class.gather(1, pred.reshape(b, -1)).reshape(b, 1, h, w)


def iw_maxsquare_loss(prob: Tensor, ratio: float = 0.2) -> Tensor:
    """L_iw = -Σ w·P^2 / (B·C) (see the module docstring); `prob` (B, C, H, W), `ratio` r in [0, 1].

    Example: for one image whose every pixel is predicted as class 0 with probability p, N_{b,0} = N_b and
    w = 1/N_b, so L_iw = -(p^2 + Σ_{c≠0} p_c^2)/C: the mean of the squared probabilities per class.
    """
    b, c = prob.shape[:2]
    return -(prob.float().pow(2) * iw_weights(prob, ratio)).sum() / (b * c)
