"""ADVENT: adversarial entropy minimisation (Vu et al., CVPR 2019, arXiv 1811.12833).

MinEnt lowers the entropy of target predictions directly; AdvEnt aligns the *weighted self-information maps*
I = −P·log P / log C of source and target with AdaptSegNet's discriminator. Chapter: ``notebooks/advent.ipynb``.
Spec: adaptsegnet_advent_globallocal.md §4. The "AdvEnt+MinEnt 45.5" result is an ensemble of two trained models'
upsampled logits (``udalib.evaluate.evaluate(..., ensemble=...)``), not a joint training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor

from ..inference import upsample
from ..losses import minent_loss, self_information
from ..presets import QUICK_ADAPTATION
from .adaptsegnet import AdaptSegNet, AdaptSegNetConfig
from .base import Backward, Batch, Method
from .supervised import source_ce_step


class AdvEnt(AdaptSegNet):
    """AdaptSegNet's game played on self-information maps (ADVENT fixes the ASPP bug: all four branches)."""

    def discriminator_input(self, prob: Tensor) -> Tensor:
        return self_information(prob)


@dataclass(frozen=True)
class MinEntConfig:
    lambda_seg_aux: float = 0.1  # LAMBDA_SEG_AUX
    lambda_ent_aux: float = 0.0002  # LAMBDA_ENT_AUX (spec §4.3)
    lambda_ent_main: float = 0.001  # LAMBDA_ENT_MAIN


class MinEnt(Method):
    """L = CE_src(main) + 0.1·CE_src(aux) + λ_main·E_t(main) + λ_aux·E_t(aux); no discriminator (spec §4.3)."""

    def training_step(self, model, source: Batch, target: Batch, step: int, backward: Backward) -> dict[str, Tensor]:
        seg, _ = source_ce_step(model, source, self.cfg.lambda_seg_aux, backward)
        out_t = model(target.image)
        size = tuple(target.image.shape[-2:])
        ent = self.cfg.lambda_ent_main * minent_loss(upsample(out_t.logits, size))
        if out_t.aux_logits is not None and self.cfg.lambda_ent_aux > 0:
            ent = ent + self.cfg.lambda_ent_aux * minent_loss(upsample(out_t.aux_logits, size))
        backward(ent)
        return {"seg": seg, "ent": ent.detach()}


def _paper_train(preset: str) -> dict:
    if preset == "paper":  # ADVENT stops at 120k of a 250k horizon (spec §4.3)
        return {"iters": 120_000, "max_iters": 250_000}
    return dict(QUICK_ADAPTATION)


def _advent(preset: str, dataset: str):
    cfg = AdaptSegNetConfig()
    if preset == "quick":  # see adaptsegnet._quick: weights scaled for a few hundred CPU iterations
        cfg = replace(cfg, lambda_adv_aux=0.002, lambda_adv_main=0.01, lr_d=2e-4)
    return cfg, {}, _paper_train(preset)


def _minent(preset: str, dataset: str):
    cfg = MinEntConfig()
    if preset == "quick":
        cfg = replace(cfg, lambda_ent_aux=0.02, lambda_ent_main=0.1)
    return cfg, {}, _paper_train(preset)


VARIANTS = {
    "advent": (AdvEnt, _advent),
    "minent": (MinEnt, _minent),
}
