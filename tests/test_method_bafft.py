"""BAFFT as a method: banks filled from the source, target terms once full, step 2 on pseudo-labels only."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.tiny_runs import tiny_config
from udalib.data.domains import build_domains, target_label_size
from udalib.data.labels import get_protocol
from udalib.presets import resolve
from udalib.pseudo_labels import generate_pseudo_labels
from udalib.train import Trainer


def _tiny(method: str, path, **method_fields):
    cfg = tiny_config(method, path, iters=4, init_checkpoint=None)
    small_banks = dict(stuff_slots=2, thing_slots=2, **method_fields)  # full after a step or two
    return dataclasses.replace(cfg, method_cfg=dataclasses.replace(cfg.method_cfg, **small_banks))


def test_step1_fills_its_banks_from_the_source_and_saves_them(tiny_cache, tmp_path):
    cfg = _tiny("bafft_step1", tmp_path)
    result = Trainer(cfg, progress="none").fit()
    m = result.method
    assert m.stuff_bank.pointer.sum() > 0  # correctly classified, classifier-agreed source pools were written
    state = torch.load(cfg.final_checkpoint, weights_only=True)["method"]
    assert {"stuff_bank.bank", "stuff_bank.pointer", "thing_bank.bank", "complexity.zeta"} <= set(state)
    rows = [line for line in (tmp_path / "bafft_step1" / "log.jsonl").read_text().splitlines()]
    assert all(k in rows[-1] for k in ('"cls"', '"ins"', '"adv"', '"stuff_ready"'))


def test_target_pools_are_pulled_to_full_banks_only():
    from udalib.methods import build_method
    from udalib.models.output import SegOutput

    cfg = dataclasses.replace(resolve("bafft", "quick").method_cfg, stuff_slots=1, thing_slots=1)
    m = build_method("bafft", cfg, 19, feature_dim=4, total_iters=10)
    head = torch.nn.Conv2d(4, 19, 1)

    class Model:
        main_head = head

    logits = torch.zeros(1, 19, 4, 4)
    logits[0, 0, :, :2] = 5  # road on the left half, a 2 x 2 car (class 13) in the right half
    logits[0, 13, 1:3, 2:4] = 9
    feats = torch.rand(1, 4, 4, 4, requires_grad=True)
    out = SegOutput(logits=logits, features=feats)
    l_cls, l_ins, logs = m._bank_terms(Model(), out)
    assert l_cls.item() == 0 and l_ins.item() == 0 and logs["instances"].item() == 0  # empty banks: nothing yet
    m.stuff_bank.push(torch.tensor([0, 0]), torch.zeros(2, 4))  # road's bank is full (pointer 2 > 1 slot)
    m.thing_bank.push(torch.tensor([m.bank_row[13].item()] * 2), torch.zeros(2, 4))
    with torch.no_grad():  # make the head agree with any pooled vector being road
        head.weight.zero_()
        head.bias.zero_()
        head.bias[0] = 1
    l_cls, l_ins, logs = m._bank_terms(Model(), out)
    assert l_ins.item() > 0 and logs["instances"].item() == 1  # the car instance against the car bank
    assert l_cls.item() > 0  # road's pool against the road bank (zeros): its mean absolute feature
    (l_cls + l_ins).backward()
    assert feats.grad.abs().sum() > 0


def test_step2_needs_pseudo_labels_and_trains_on_them(tiny_cache, tmp_path):
    step1 = Trainer(_tiny("bafft_step1", tmp_path / "s1"), progress="none").fit()
    cfg = _tiny("bafft", tmp_path / "s2")
    assert cfg.method_cfg.lambda_target_ce == 1.0 and cfg.method_cfg.lambda_sep > 0
    no_labels = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, pseudo_label_dir=None))
    with pytest.raises(ValueError, match="would carry the target's ground truth"):
        Trainer(no_labels, progress="none").fit()

    folder = tmp_path / "pl"
    generate_pseudo_labels(
        step1.model,
        build_domains(no_labels).pseudo_label_loader(),
        folder,
        num_classes=get_protocol(cfg.data.protocol).num_classes,
        label_size=target_label_size(cfg),
    )
    with_labels = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, pseudo_label_dir=str(folder)))
    Trainer(with_labels, progress="none").fit()
    rows = (tmp_path / "s2" / "bafft" / "log.jsonl").read_text().splitlines()
    assert '"ce_t"' in rows[-1] and '"isia"' in rows[-1]


def test_the_model_exposes_its_main_head_and_released_options_run(tiny_cache, tmp_path):
    cfg = _tiny("bafft_step1", tmp_path, isia="released", lambda_sep=0.01, aim="self_weighted")
    Trainer(cfg, progress="none").fit()
    with pytest.raises(ValueError, match="isia must be"):
        Trainer(_tiny("bafft_step1", tmp_path / "bad", isia="singleton"), progress="none").fit()
    paper = resolve("bafft", "paper", data_root="/d/g", target_root="/d/c", device="cuda")
    assert paper.train.iters == 205_000 and paper.data.pseudo_label_dir == "stage:bafft_step1"
    assert resolve(
        "bafft_step1", "paper", dataset="synthia", data_root="/d/s", target_root="/d/c", device="cuda"
    ).method_cfg.stuff_classes == (0, 1, 2, 3, 4, 8, 9)


def test_isia_takes_source_and_target_images_of_different_sizes():
    """The paper's source (1280×720) and target (1024×512) images differ in size, so do their feature maps."""
    from udalib.data.streams import Batch
    from udalib.methods import build_method
    from udalib.models.output import SegOutput

    m = build_method("bafft", resolve("bafft", "quick").method_cfg, 19, feature_dim=4, total_iters=10)
    torch.manual_seed(0)
    out_s = SegOutput(logits=torch.randn(1, 19, 6, 10), features=torch.rand(1, 4, 6, 10))
    out_t = SegOutput(logits=torch.randn(1, 19, 4, 8), features=torch.rand(1, 4, 4, 8, requires_grad=True))
    label = out_s.logits.argmax(dim=1).repeat_interleave(8, dim=1).repeat_interleave(8, dim=2)  # all correct
    isia = m._isia(None, out_s, Batch(torch.zeros(1, 3, 48, 80), label, {}), out_t)  # no classifier needed
    assert torch.isfinite(isia) and isia.item() > 0
    isia.backward()
    assert out_t.features.grad.abs().sum() > 0


def test_released_isia_counts_only_full_banks_and_stuff_the_classifier_agrees_with():
    """train_step2.py adds a stuff-thing pair only when both banks are full and the classifier, applied to the
    pooled stuff vector, predicts its class."""
    from udalib.methods import build_method
    from udalib.models.output import SegOutput

    cfg = dataclasses.replace(resolve("bafft", "quick").method_cfg, isia="released", stuff_slots=1, thing_slots=1)
    m = build_method("bafft", cfg, 19, feature_dim=4, total_iters=10)
    head = torch.nn.Conv2d(4, 19, 1)

    class Model:
        main_head = head

    logits = torch.zeros(1, 19, 4, 4)  # road (class 0, the argmax of equal logits) except a 2 x 2 car (13)
    logits[0, 13, 1:3, 2:4] = 9
    feats = torch.zeros(1, 4, 4, 4)
    feats[0, 0] = 1.0  # road pixels (1, 0, 0, 0)
    feats[0, :, 1:3, 2:4] = torch.tensor([0.0, 1.0, 0.0, 0.0])[:, None, None]  # car pixels (0, 1, 0, 0): cos 0
    out = SegOutput(logits=logits, features=feats)
    assert m._isia(Model(), None, None, out).item() == 0  # no bank full yet: the released code adds nothing
    m.stuff_bank.push(torch.tensor([0, 0]), torch.zeros(2, 4))
    m.thing_bank.push(torch.tensor([m.bank_row[13].item()] * 2), torch.zeros(2, 4))
    with torch.no_grad():  # the classifier calls every vector a car: road's pool is left out
        head.weight.zero_()
        head.bias.zero_()
        head.bias[13] = 1
    assert m._isia(Model(), None, None, out).item() == 0
    with torch.no_grad():  # now it agrees with road: one pair, (1 + cos) / 2 = 0.5, times the released 500 / 2048
        head.bias[13] = 0
        head.bias[0] = 1
    assert m._isia(Model(), None, None, out).item() == pytest.approx(0.5 * 500 / 2048)
