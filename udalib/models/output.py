"""What every segmenter returns, so that no method reaches into a model's layers."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class SegOutput:
    """Outputs of one forward pass, all at the network's output stride (not upsampled).

    logits:     (B, K, h, w) main classifier head (ASPP on the last backbone stage).
    features:   (B, A, h, w) backbone features that feed the main head (feature-level losses act on these).
    aux_logits: (B, K, h, w) multi-level head on the previous stage, or None when the model is single-level.
    """

    logits: Tensor
    features: Tensor
    aux_logits: Tensor | None = None
