"""BAFFT's per-class source memories: the boundary at which a class's bank becomes ready."""

import torch

from udalib.losses.feature_banks import FeatureBank


def test_a_class_is_ready_only_after_more_writes_than_slots():
    """The released rule (BAFFT's train_step1.py and train_step2.py: ``pointer / slots > 1``): a bank written
    exactly `slots` times is full but not yet ready; the next write makes it ready."""
    bank = FeatureBank(num_classes=2, slots=4, dim=3)
    bank.push(torch.tensor([0, 0, 0, 1]), torch.ones(4, 3))
    assert bank.pointer.tolist() == [3, 1] and bank.ready().tolist() == [False, False]
    bank.push(torch.tensor([0]), torch.ones(1, 3))
    assert bank.pointer.tolist() == [4, 1] and bank.ready().tolist() == [False, False]  # pointer == slots
    bank.push(torch.tensor([0, 1, 1, 1]), torch.full((4, 3), 2.0))
    assert bank.pointer.tolist() == [5, 4] and bank.ready().tolist() == [True, False]
    assert torch.equal(bank.bank[0, 0], torch.full((3,), 2.0))  # the fifth write replaced the oldest slot
