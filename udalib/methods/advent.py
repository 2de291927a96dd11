"""ADVENT: adversarial entropy minimisation (Vu et al., CVPR 2019, arXiv 1811.12833).

MinEnt lowers the entropy of target predictions directly; AdvEnt aligns the *weighted self-information maps*
I = −P·log P / log C of source and target with AdaptSegNet's discriminator. Chapter: ``notebooks/advent.ipynb``.
Code: ADVENT ``train_UDA.py``. The "AdvEnt+MinEnt 45.5" result is an ensemble of two trained models'
upsampled logits (``udalib.evaluate.evaluate(..., ensemble=...)``), not a joint training.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..inference import upsample
from ..losses import minent_loss, self_information
from .adaptsegnet import AdaptSegNet, AdaptSegNetConfig
from .base import Backward, Batch, Method, Variant
from .supervised import source_ce_step


class AdvEnt(AdaptSegNet):
    """AdaptSegNet's game played on self-information maps (ADVENT fixes the ASPP bug: all four branches)."""

    def discriminator_input(self, prob: Tensor) -> Tensor:
        return self_information(prob)


@dataclass(frozen=True)
class MinEntConfig:
    lambda_seg_aux: float = 0.1  # LAMBDA_SEG_AUX
    lambda_ent_aux: float = 0.0002  # LAMBDA_ENT_AUX (advent/domain_adaptation/config.py)
    lambda_ent_main: float = 0.001  # LAMBDA_ENT_MAIN


class MinEnt(Method):
    """L = CE_src(main) + 0.1·CE_src(aux) + λ_main·E_t(main) + λ_aux·E_t(aux); no discriminator (``train_minent``)."""

    def training_step(self, model, source: Batch, target: Batch, step: int, backward: Backward) -> dict[str, Tensor]:
        seg, _ = source_ce_step(model, source, self.cfg.lambda_seg_aux, backward)
        out_t = model(target.image)
        size = tuple(target.image.shape[-2:])
        ent = self.cfg.lambda_ent_main * minent_loss(upsample(out_t.logits, size))
        if out_t.aux_logits is not None and self.cfg.lambda_ent_aux > 0:
            ent = ent + self.cfg.lambda_ent_aux * minent_loss(upsample(out_t.aux_logits, size))
        backward(ent)
        return {"seg": seg, "ent": ent.detach()}


VARIANTS = {
    "advent": Variant(AdvEnt, AdaptSegNetConfig(), "ADVENT: adversarial alignment of self-information maps"),
    "minent": Variant(MinEnt, MinEntConfig(), "ADVENT's MinEnt: entropy minimisation on target predictions"),
}
