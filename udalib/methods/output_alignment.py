"""Output-space adversarial alignment, the component AdaptSegNet, AdvEnt and global-local alignment share.

For each output level l (``aux`` on layer3, ``main`` on layer4) a discriminator D_l sees a map M(P) computed
from the upsampled softmax P: the softmax itself (AdaptSegNet) or the weighted self-information (AdvEnt).
One iteration follows AdaptSegNet's loop: the segmenter minimises Σ_l λ_l·ℓ(D_l(M(P_t^l)), source) with every D frozen,
then each D minimises ½ℓ(D(M(P_s)), source) + ½ℓ(D(M(P_t)), target) on detached maps, so no gradient of the
discriminator loss reaches the segmenter and none of the adversarial loss updates D.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..losses import discriminator_loss, generator_loss
from ..models.discriminators import PatchDiscriminator
from .base import Backward, set_requires_grad


class OutputDiscriminators(nn.Module):
    """One discriminator and one Adam optimiser per level with a non-zero weight (AdaptSegNet's: Adam 1e-4,
    betas (0.9, 0.99), poly-scheduled by the trainer)."""

    def __init__(
        self,
        num_classes: int,
        weights: dict[str, float],
        *,
        lr: float,
        gan: str,
        make: Callable[[int], nn.Module] = PatchDiscriminator,
        betas=(0.9, 0.99),
    ):
        super().__init__()
        self.weights = {lvl: w for lvl, w in weights.items() if w > 0}
        self.gan = gan
        self.nets = nn.ModuleDict({lvl: make(num_classes) for lvl in self.weights})
        self.optimizers = [torch.optim.Adam(net.parameters(), lr=lr, betas=betas) for net in self.nets.values()]
        for o in self.optimizers:
            for g in o.param_groups:
                g["initial_lr"] = lr

    def generator_step(self, target_maps: dict[str, Tensor], mask: dict[str, Tensor] | None = None) -> Tensor:
        """Σ_l λ_l·ℓ(D_l(M_t^l), source), with the discriminators frozen (their params get no gradient)."""
        set_requires_grad(self.nets, False)
        loss = sum(
            w * generator_loss(self.nets[lvl](target_maps[lvl]), self.gan, None if mask is None else mask.get(lvl))
            for lvl, w in self.weights.items()
        )
        return loss

    def discriminator_step(
        self,
        source_maps: dict[str, Tensor],
        target_maps: dict[str, Tensor],
        backward: Backward,
        source_mask: dict[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Backpropagate each D_l's loss on detached maps; returns the per-level D losses and D's mean output
        on source and target (for the chapters' plots of the adversarial game)."""
        set_requires_grad(self.nets, True)
        logs = {}
        for lvl in self.weights:
            net = self.nets[lvl]
            d_s, d_t = net(source_maps[lvl].detach()), net(target_maps[lvl].detach())
            loss = discriminator_loss(d_s, d_t, self.gan, None if source_mask is None else source_mask.get(lvl))
            backward(loss)
            logs[f"d_{lvl}"] = loss.detach()
            logs[f"d_{lvl}_src_out"] = torch.sigmoid(d_s.detach().float()).mean()
            logs[f"d_{lvl}_tgt_out"] = torch.sigmoid(d_t.detach().float()).mean()
        return logs
