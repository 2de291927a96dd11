"""MaxSquare: the maximum squares loss on target predictions, plain and image-wise class-balanced (IW).

Chen, Xue, Cai, "Domain Adaptation for Semantic Segmentation with Maximum Squares Loss", ICCV 2019,
https://arxiv.org/abs/1909.13589; code ZJULearning/MaxSquareLoss, which UDAclustering builds on
(``utils/loss.py:IW_MaxSquareloss``, ``tools/solve_gta5.py``). Single-level, from a source-only model; the loss is in
``udalib/losses/maxsquare.py``. Chapter: ``notebooks/clustering.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..inference import upsample
from ..losses.maxsquare import iw_maxsquare_loss, maxsquare_loss
from ..models.output import SegOutput
from .base import Backward, Batch, Method, Variant
from .supervised import source_ce_step


@dataclass(frozen=True)
class MaxSquareConfig:
    lambda_seg_aux: float = 0.0  # single-level: no auxiliary head
    lambda_target: float = 0.1  # weight of the target loss (UDAclustering's λ_entropy for GTA5 / ResNet-101)
    iw_ratio: float | None = None  # None: plain MaxSquare; r in [0, 1]: IW-MaxSquare (0.2 released)


class MaxSquare(Method):
    """L = CE_src + λ_target·L_ms(P_t), with P_t the target softmax at the input size (IW when `iw_ratio` is set)."""

    def target_loss(self, out_t: SegOutput, target: Batch) -> tuple[Tensor, Tensor]:
        """(λ·L_ms on the target's upsampled probabilities, the probabilities)."""
        prob = upsample(out_t.logits, tuple(target.image.shape[-2:])).float().softmax(dim=1)
        r = self.cfg.iw_ratio
        loss = maxsquare_loss(prob) if r is None else iw_maxsquare_loss(prob, r)
        return self.cfg.lambda_target * loss, prob

    def training_step(self, model, source: Batch, target: Batch, step: int, backward: Backward) -> dict[str, Tensor]:
        seg, _ = source_ce_step(model, source, self.cfg.lambda_seg_aux, backward)
        loss, _ = self.target_loss(model(target.image), target)
        backward(loss)
        return {"seg": seg, "ms": loss.detach()}


VARIANTS = {
    "maxsquare": Variant(MaxSquare, MaxSquareConfig(), "MaxSquare: maximum squares loss on target predictions"),
    "maxsquare_iw": Variant(
        MaxSquare, MaxSquareConfig(iw_ratio=0.2), "MaxSquare with image-wise class-balanced weights (IW, r = 0.2)"
    ),
}
