"""AdaptSegNet: adversarial learning in the output space (Tsai et al., CVPR 2018, arXiv 1802.10349).

A segmenter trained on labelled source images is pushed to make its target softmax maps indistinguishable from
its source ones to a fully convolutional patch discriminator, at one level (layer4) or two (layer3 and layer4).
Chapter: ``notebooks/adaptsegnet.ipynb``. Spec: adaptsegnet_advent_globallocal.md §3.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..presets import QUICK_ADAPTATION
from .base import Backward, Batch, Method
from .output_alignment import OutputDiscriminators, level_maps
from .supervised import source_ce_step


@dataclass(frozen=True)
class AdaptSegNetConfig:
    lambda_seg_aux: float = 0.1  # λ_seg: CE weight of the layer3 head (spec §3.3, multi-level)
    lambda_adv_aux: float = 0.0002  # λ_adv1: adversarial weight on layer3 softmax
    lambda_adv_main: float = 0.001  # λ_adv2: adversarial weight on layer4 softmax
    gan: str = "bce"  # bce (vanilla GAN) | ls (least squares, README 10/2019)
    lr_d: float = 1e-4  # Adam, betas (0.9, 0.99), poly like the segmenter


class AdaptSegNet(Method):
    """One iteration (spec §3.4): source CE → target adversarial (D frozen) → D update on detached maps."""

    def __init__(self, cfg: AdaptSegNetConfig, num_classes: int, total_iters: int = 0):
        super().__init__(cfg, num_classes, total_iters)
        self.disc = OutputDiscriminators(num_classes, {"aux": cfg.lambda_adv_aux, "main": cfg.lambda_adv_main},
                                         lr=cfg.lr_d, gan=cfg.gan)

    def aux_optimizers(self):
        return self.disc.optimizers

    def discriminator_input(self, prob: Tensor) -> Tensor:
        """AdaptSegNet aligns the softmax itself."""
        return prob

    def training_step(self, model, source: Batch, target: Batch, step: int, backward: Backward) -> dict[str, Tensor]:
        seg, out_s = source_ce_step(model, source, self.cfg.lambda_seg_aux, backward)
        out_t = model(target.image)
        maps_t = level_maps(out_t, tuple(target.image.shape[-2:]), self.discriminator_input)
        adv = self.disc.generator_step(maps_t)
        backward(adv)
        maps_s = level_maps(out_s, tuple(source.image.shape[-2:]), self.discriminator_input)
        return {"seg": seg, "adv": adv.detach(), **self.disc.discriminator_step(maps_s, maps_t, backward)}


def _variant(multi_level: bool, gan: str):
    def build(preset: str, dataset: str) -> tuple[AdaptSegNetConfig, dict, dict]:
        if multi_level:
            cfg = AdaptSegNetConfig(gan=gan)
        else:  # single level: no aux head; λ_adv 0.001 (BCE) or 0.01 (LS-GAN) (spec §3.3)
            cfg = AdaptSegNetConfig(lambda_seg_aux=0.0, lambda_adv_aux=0.0,
                                    lambda_adv_main=0.01 if gan == "ls" else 0.001, gan=gan)
        train = {"multi_level": multi_level}
        if preset == "paper":
            train.update(iters=150_000, max_iters=250_000, aspp_bug_compat=False)
        else:
            cfg = _quick(cfg)
            train.update(QUICK_ADAPTATION)
        return cfg, {}, train

    return build


def _quick(cfg: AdaptSegNetConfig) -> AdaptSegNetConfig:
    """The small CPU model adapts for a few hundred iterations instead of 150k: the adversarial weights are
    scaled ×10 so the game moves the segmenter within that budget (measured in the chapter)."""
    from dataclasses import replace

    return replace(cfg, lambda_adv_aux=cfg.lambda_adv_aux * 10, lambda_adv_main=cfg.lambda_adv_main * 10,
                   lr_d=cfg.lr_d * 2)


VARIANTS = {
    "adaptsegnet_single": (AdaptSegNet, _variant(False, "bce")),
    "adaptsegnet_multi": (AdaptSegNet, _variant(True, "bce")),
    "adaptsegnet_ls": (AdaptSegNet, _variant(False, "ls")),
}
