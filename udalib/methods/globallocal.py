"""Joint global-local output alignment (Yarram et al., ICASSP 2022) — **our reading** of an unconfirmed design.

What the paper says (abstract, concept figure): global (whole-map) alignment is hindered by the high dimension of
the aligned space and by noisy source *background* pixels; a *local* alignment of per-pixel outputs (1×1×K) is
added on top of a global method. What the released code does: ADVENT with both patch discriminators replaced by
per-pixel 1×1-conv discriminators, no global branch, no masking (its ``train_UDA.py``). What we implement (our
reading of the paper): ADVENT's patch discriminator on self-information maps (global) **plus** a per-pixel discriminator
on the same maps (local), with source void pixels (label 255) masked out of the local discriminator's source term;
trained jointly by default, or sequentially (global first, then local) as an option.
Chapter: ``notebooks/globallocal.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import IGNORE_INDEX
from ..inference import level_maps
from ..models.discriminators import PixelDiscriminator
from .adaptsegnet import AdaptSegNetConfig
from .advent import AdvEnt
from .base import Backward, Batch, Variant
from .output_alignment import OutputDiscriminators
from .supervised import source_ce_step


@dataclass(frozen=True)
class GlobalLocalConfig(AdaptSegNetConfig):
    """ADVENT's config (the global branch: λ_adv on the patch discriminators, as ADVENT) plus the local branch."""

    lambda_local_aux: float = 0.0002  # local (per-pixel) branch: ADVENT's λ (our choice)
    lambda_local_main: float = 0.001
    schedule: str = "joint"  # joint | sequential (global for the first `switch_fraction` of iterations, then local)
    switch_fraction: float = 0.5
    mask_source_void: bool = True  # drop source pixels labelled 255 from the local source term (our reading)
    # Pixels per image the local discriminator scores, drawn uniformly with replacement; None = all of them. Its
    # 1×1 convs see each pixel alone, so a random subset estimates the same per-pixel mean loss without bias, at a
    # fraction of the cost (all pixels at 512 channels dominate a CPU step ninefold in the quick preset).
    local_pixels: int | None = None


class GlobalLocal(AdvEnt):
    """AdvEnt's global game on self-information maps plus a per-pixel game on the same maps."""

    def __init__(self, cfg: GlobalLocalConfig, num_classes: int, **kw):
        super().__init__(cfg, num_classes, **kw)
        self.local = OutputDiscriminators(
            num_classes,
            {"aux": cfg.lambda_local_aux, "main": cfg.lambda_local_main},
            lr=cfg.lr_d,
            gan=cfg.gan,
            make=PixelDiscriminator,
        )

    def aux_optimizers(self):
        return self.disc.optimizers + self.local.optimizers

    def active(self, step: int) -> tuple[bool, bool]:
        """Which branches train at `step`: (global, local)."""
        if self.cfg.schedule == "joint":
            return True, True
        if self.cfg.schedule != "sequential":
            raise ValueError(f"schedule must be 'joint' or 'sequential', got {self.cfg.schedule!r}")
        first = step < self.cfg.switch_fraction * max(self.total_iters, 1)
        return first, not first

    def void_mask(self, label: Tensor, levels) -> dict[str, Tensor]:
        """Per level, (B, H, W) True on source pixels with a class label (255 = void is dropped)."""
        valid = label != IGNORE_INDEX
        return {lvl: valid for lvl in levels}

    def local_sample(
        self, maps: dict[str, Tensor], mask: dict[str, Tensor] | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
        """The local branch's pixels: all of them, or `local_pixels` per image drawn at random (the same positions
        at every level), returned as (B, K, n, 1) maps and (B, n, 1) masks that the 1×1 convs read as images."""
        n = self.cfg.local_pixels
        if n is None:
            return maps, mask
        ref = next(iter(maps.values()))
        b, _, h, w = ref.shape
        idx = torch.randint(h * w, (b, 1, n), device=ref.device)  # (B, 1, n)
        picked = {lvl: m.flatten(2).gather(2, idx.expand(b, m.shape[1], n)).unsqueeze(-1) for lvl, m in maps.items()}
        if mask is not None:
            mask = {lvl: m.flatten(1).gather(1, idx[:, 0]).unsqueeze(-1) for lvl, m in mask.items()}
        return picked, mask

    def training_step(self, model, source: Batch, target: Batch, step: int, backward: Backward) -> dict[str, Tensor]:
        use_global, use_local = self.active(step)
        seg, out_s = source_ce_step(model, source, self.cfg.lambda_seg_aux, backward)
        out_t = model(target.image)
        maps_t = level_maps(out_t, tuple(target.image.shape[-2:]), self.discriminator_input)
        maps_s = level_maps(out_s, tuple(source.image.shape[-2:]), self.discriminator_input)
        logs = {"seg": seg}
        adv = torch.zeros((), device=seg.device)
        if use_global:
            adv = adv + self.disc.generator_step(maps_t)
        if use_local:
            local_t, _ = self.local_sample(maps_t)
            adv = adv + self.local.generator_step(local_t)
        backward(adv)
        logs["adv"] = adv.detach()
        if use_global:
            logs.update(self.disc.discriminator_step(maps_s, maps_t, backward))
        if use_local:
            mask = self.void_mask(source.label, self.local.weights) if self.cfg.mask_source_void else None
            local_s, mask = self.local_sample(maps_s, mask)
            local_logs = self.local.discriminator_step(local_s, local_t, backward, source_mask=mask)
            logs.update({f"local_{k}": v for k, v in local_logs.items()})
        return logs


VARIANTS = {
    "globallocal": Variant(
        GlobalLocal, GlobalLocalConfig(), "AdvEnt plus a per-pixel (local) discriminator, our reading of Yarram et al."
    )
}
