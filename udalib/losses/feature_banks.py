"""Per-class FIFO memories of source feature vectors and the distance to their nearest entry (BAFFT, after SIM).

BAFFT ``train_step1.py``. A bank holds K classes × M slots × D channels: every iteration writes the
source vectors of a class into its slots in turn (a circular buffer, detached: a memory, not a mean or an EMA). A
class is *ready*, and its target loss active, once its buffer has been filled (the pointer has passed M). The
distance of a target vector f to class k's memory is the mean absolute difference to the nearest entry,

    d(f, B_k) = min_j (1/D) · Σ_c |f_c − B_{k,j,c}|.

BAFFT's paper preset: stuff 8 classes × 50 slots, things 11 classes × 500 slots, D = 2048. The bank is a module
with buffers, so it is saved in the method's checkpoint and a resumed run continues with the same memory. Example::

    bank = FeatureBank(num_classes=8, slots=50, dim=2048)
    bank.push(torch.tensor([0, 3]), vectors)                 # (2, D) source vectors of classes 0 and 3
    d = bank.nearest_distance(target_vectors, torch.tensor([0, 0]))   # (2,)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FeatureBank(nn.Module):
    """`bank` (K, M, D) and `pointer` (K,) buffers; see the module docstring."""

    def __init__(self, num_classes: int, slots: int, dim: int):
        super().__init__()
        self.slots = slots
        self.register_buffer("bank", torch.zeros(num_classes, slots, dim))
        self.register_buffer("pointer", torch.zeros(num_classes, dtype=torch.long))

    @torch.no_grad()
    def push(self, classes: Tensor, vectors: Tensor) -> None:
        """Write (N, D) `vectors` (detached) into the slots of their (N,) `classes`, in order, oldest first out."""
        for k in classes.unique().tolist():  # a loop over the classes of this batch, not over pixels
            rows = vectors[classes == k].detach().to(self.bank.dtype)
            n = rows.shape[0]
            slots = (self.pointer[k] + torch.arange(n, device=rows.device)) % self.slots
            self.bank[k, slots] = rows  # with more rows than slots, the last ones win, as in a FIFO
            self.pointer[k] += n

    def ready(self) -> Tensor:
        """(K,) bool: the class's buffer has been filled once (the released rule: pointer / slots > 1)."""
        return self.pointer > self.slots

    def nearest_distance(self, vectors: Tensor, classes: Tensor) -> Tensor:
        """(N,) mean absolute difference of each (N, D) vector to the nearest entry of its class's memory."""
        memory = self.bank[classes].to(vectors.dtype)  # (N, M, D)
        return (vectors[:, None, :] - memory).abs().mean(dim=2).min(dim=1).values
