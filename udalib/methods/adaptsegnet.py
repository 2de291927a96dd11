"""AdaptSegNet: adversarial learning in the output space (Tsai et al., CVPR 2018, arXiv 1802.10349).

A segmenter trained on labelled source images is pushed to make its target softmax maps indistinguishable from
its source ones to a fully convolutional patch discriminator, at one level (layer4) or two (layer3 and layer4).
Chapter: ``notebooks/adaptsegnet.ipynb``. Released code: wasidennis/AdaptSegNet ``train_gta2cityscapes_multi.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor

from ..inference import level_maps
from .base import Backward, Batch, Method, Variant
from .output_alignment import OutputDiscriminators
from .supervised import source_ce_step


@dataclass(frozen=True)
class AdaptSegNetConfig:
    lambda_seg_aux: float = 0.1  # λ_seg: CE weight of the layer3 head (train_gta2cityscapes_multi.py, multi-level)
    lambda_adv_aux: float = 0.0002  # λ_adv1: adversarial weight on layer3 softmax
    lambda_adv_main: float = 0.001  # λ_adv2: adversarial weight on layer4 softmax
    gan: str = "bce"  # bce (vanilla GAN) | ls (least squares, README 10/2019)
    lr_d: float = 1e-4  # Adam, betas (0.9, 0.99), poly like the segmenter


class AdaptSegNet(Method):
    """One iteration (as the released loop): source CE → target adversarial (D frozen) → D update on detached maps."""

    def __init__(self, cfg: AdaptSegNetConfig, num_classes: int, **kw):
        super().__init__(cfg, num_classes, **kw)
        self.disc = OutputDiscriminators(
            num_classes, {"aux": cfg.lambda_adv_aux, "main": cfg.lambda_adv_main}, lr=cfg.lr_d, gan=cfg.gan
        )

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


#: Single level (layer4 only, no aux head: the preset row sets ``multi_level=False``): λ_adv = 0.001 with the BCE
#: GAN, 0.01 with the least-squares GAN (AdaptSegNet's README commands).
SINGLE_LEVEL = AdaptSegNetConfig(lambda_seg_aux=0.0, lambda_adv_aux=0.0, lambda_adv_main=0.001)

VARIANTS = {
    "adaptsegnet_single": Variant(AdaptSegNet, SINGLE_LEVEL, "AdaptSegNet, one discriminator on layer4 softmax"),
    "adaptsegnet_multi": Variant(
        AdaptSegNet, AdaptSegNetConfig(), "AdaptSegNet, discriminators on layer3 and layer4 softmax"
    ),
    "adaptsegnet_ls": Variant(
        AdaptSegNet,
        replace(SINGLE_LEVEL, lambda_adv_main=0.01, gan="ls"),
        "AdaptSegNet single-level with the least-squares GAN",
    ),
}
