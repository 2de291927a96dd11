"""The trainer: poly schedule, exact resume, checkpoints that refuse to be overwritten, training that learns."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from tiny_runs import tiny_config

from udalib.data.domains import build_domains
from udalib.evaluate import evaluate
from udalib.models.trained import build_segmenter
from udalib.presets import resolve
from udalib.train import Cadence, Trainer, poly_factor


def test_poly_factor_matches_the_seeds_formula():
    assert poly_factor(0, 250_000, 0.9) == 1.0
    assert poly_factor(150_000, 250_000, 0.9) == pytest.approx((1 - 0.6) ** 0.9)
    assert poly_factor(10, 10, 0.9) == 0.0


def test_cadence_logs_checkpoints_and_evaluates_on_schedule_and_at_the_end():
    c = Cadence(log_every=2, checkpoint_every=3, eval_every=5, last=7)
    assert [c.due(i) for i in range(1, 8)] == [
        (False, False, False),
        (True, False, False),
        (False, True, False),
        (True, False, False),
        (False, False, True),
        (True, True, False),
        (True, True, True),
    ]


def _losses(out_dir):
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def test_resume_continues_the_same_run(tiny_cache, tmp_path):
    full = tiny_config("source_only", tmp_path / "full", iters=6)
    full = dataclasses.replace(full, train=dataclasses.replace(full.train, checkpoint_every=3, eval_every=6))
    Trainer(full, progress="none").fit()
    a = _losses(tmp_path / "full" / "source_only")

    part = dataclasses.replace(full, out_dir=str(tmp_path / "part"), train=dataclasses.replace(full.train, iters=3))
    Trainer(part, progress="none").fit()
    resumed = dataclasses.replace(part, train=full.train, resume="auto")
    Trainer(resumed, progress="none").fit()
    b = _losses(tmp_path / "part")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b):
        assert rb["lr"] == pytest.approx(ra["lr"], rel=1e-12)
        assert rb["seg"] == pytest.approx(ra["seg"], rel=1e-5), (ra, rb)


def test_existing_run_is_not_overwritten(tiny_cache, tmp_path):
    cfg = tiny_config("source_only", tmp_path, iters=1)
    Trainer(cfg, progress="none").fit()
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        Trainer(cfg, progress="none").fit()


def test_checkpoint_holds_everything_to_resume(tiny_cache, tmp_path):
    cfg = tiny_config("adaptsegnet_multi", tmp_path, iters=2, init_checkpoint=None)
    Trainer(cfg, progress="none").fit()
    state = torch.load(tmp_path / "adaptsegnet_multi" / "checkpoint_0000002.pt", weights_only=True)
    assert state["step"] == 2
    assert {"model", "optimizer", "aux_optimizers", "method", "rng", "config"} <= set(state)
    assert len(state["aux_optimizers"]) == 2  # one Adam per discriminator level
    assert any(k.startswith("disc.nets.main") for k in state["method"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_short_quick_run_beats_an_untrained_model(tiny_cache, tmp_path):
    cfg = tiny_config("source_only", tmp_path, iters=60, counts=(96, 16, 16))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_source=8, log_every=20))
    torch.manual_seed(0)
    untrained = build_segmenter(cfg.train, 19)
    before = evaluate(untrained, build_domains(cfg).target_val_loader(), "cityscapes19").main_miou
    after = Trainer(cfg, progress="none").fit().final.main_miou
    assert after > before + 5, (before, after)


@pytest.mark.parametrize("bn_mode", ["trainable", "affine_frozen", "frozen"])
def test_the_configured_bn_mode_reaches_the_small_model(bn_mode):
    """The run's bn_mode is the model's: the quick preset says "trainable", and a "frozen" run keeps every BN in
    eval mode while the model trains (an earlier version silently built the small model with trainable BN)."""
    assert resolve("source_only", "quick").train.bn_mode == "trainable"
    model = build_segmenter(resolve("advent", "quick", bn_mode=bn_mode).train, 19).train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert model.bn_mode == bn_mode
    assert all(bn.training == (bn_mode != "frozen") for bn in bns)
    assert all(bn.weight.requires_grad == (bn_mode == "trainable") for bn in bns)


def test_compiled_training_steps_learn_the_same_weights(tiny_cache, tmp_path):
    """``TrainConfig.compile``: the steps run through torch.compile (the graph-capture backend here; "inductor" on
    a GPU), checkpoints hold the plain module's keys, and the weights are those of the eager run."""
    eager = Trainer(tiny_config("advent", tmp_path / "eager", iters=2, init_checkpoint=None), progress="none").fit()
    cfg = tiny_config("advent", tmp_path / "compiled", iters=2, init_checkpoint=None, compile="eager")
    compiled = Trainer(cfg, progress="none").fit()
    a, b = eager.model.state_dict(), compiled.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    state = torch.load(cfg.final_checkpoint, weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in state["model"])
    with pytest.raises(ValueError, match="compile must be one of"):
        dataclasses.replace(cfg.train, compile="fast")


def test_a_resumed_run_with_random_augmentation_takes_the_same_steps(tiny_cache, tmp_path):
    """SDCA's stage 3 jitters, greys and blurs source images and samples them class-balanced: each item's
    augmentation is seeded by its draw, so a run resumed at step 2 ends with the uninterrupted run's weights."""
    full = tiny_config("sdca", tmp_path / "full", iters=4, init_checkpoint=None)
    full = dataclasses.replace(full, train=dataclasses.replace(full.train, checkpoint_every=2, eval_every=4))
    assert full.data.source_aug == "sdca_color" and full.data.source_sampling == "class_balanced"
    a = Trainer(full, progress="none").fit().model.state_dict()

    part = dataclasses.replace(full, out_dir=str(tmp_path / "part"), train=dataclasses.replace(full.train, iters=2))
    Trainer(part, progress="none").fit()
    resumed = dataclasses.replace(part, train=full.train, resume="auto")
    b = Trainer(resumed, progress="none").fit().model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_augmentation_depends_on_the_draw_not_on_the_global_rng():
    from udalib.data.streams import SeededItems

    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.rand(2) + i

    items = SeededItems(Noisy(), seed=5)
    first = items[(7, 1)]
    torch.rand(100)  # the caller's RNG moves on
    state = torch.get_rng_state()
    assert torch.equal(items[(7, 1)], first) and not torch.equal(items[(8, 1)], first)
    assert torch.equal(torch.get_rng_state(), state)  # reading an item leaves the caller's RNG alone


def _spy_on_steps(monkeypatch) -> tuple[list[tuple[int, list[float], list[float]]], dict[str, torch.Tensor]]:
    """(iteration, the segmenter's group LRs, the auxiliary optimisers' LRs) as each training step starts, and the
    method's initial state."""
    seen: list[tuple[int, list[float], list[float]]] = []
    initial: dict[str, torch.Tensor] = {}
    build = Trainer._build

    def spying_build(self, *, fresh):
        parts = build(self, fresh=fresh)
        initial.update({k: v.clone() for k, v in parts.method.state_dict().items()})
        step = parts.method.training_step

        def spy(model, src, tgt, k, backward):
            aux = [g["lr"] for o in parts.method.aux_optimizers() for g in o.param_groups]
            seen.append((k, [g["lr"] for g in parts.opt.param_groups], aux))
            return step(model, src, tgt, k, backward)

        parts.method.training_step = spy
        return parts

    monkeypatch.setattr(Trainer, "_build", spying_build)
    return seen, initial


def test_every_optimiser_follows_the_poly_schedule_and_is_stepped(tiny_cache, tmp_path, monkeypatch):
    """At iteration k the backbone trains at lr·(1 − k/horizon)^0.9, the heads at 10× that and both discriminators
    at lr_d·(1 − k/horizon)^0.9 (AdaptSegNet's train_gta2cityscapes_multi.py: adjust_learning_rate and
    adjust_learning_rate_D); log.jsonl's row of iteration k+1 states the backbone's LR; every discriminator moves."""
    seen, initial = _spy_on_steps(monkeypatch)
    cfg = tiny_config("adaptsegnet_multi", tmp_path, iters=4, init_checkpoint=None)
    t, lr_d = cfg.train, cfg.method_cfg.lr_d
    assert (t.head_lr_mult, t.poly_power) == (10.0, 0.9) and t.poly_horizon == 8
    result = Trainer(cfg, progress="none").fit()
    assert [k for k, _, _ in seen] == [0, 1, 2, 3]
    for k, groups, aux in seen:
        f = (1 - k / 8) ** 0.9
        assert groups == pytest.approx([t.lr * f, 10 * t.lr * f], rel=1e-12), k
        assert aux == pytest.approx([lr_d * f, lr_d * f], rel=1e-12), k
    logged = _losses(tmp_path / "adaptsegnet_multi")
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    assert [r["lr"] for r in logged] == pytest.approx([t.lr * (1 - k / 8) ** 0.9 for k in range(4)], rel=1e-12)
    trained = result.method.state_dict()
    for level in ("aux", "main"):
        weights = [k for k in trained if k.startswith(f"disc.nets.{level}") and k.endswith("weight")]
        assert weights and all(not torch.equal(trained[k], initial[k]) for k in weights), level


def test_a_resume_restores_the_torch_rng(tiny_cache, tmp_path):
    """Global-local's local branch draws its pixels from torch's global RNG (``local_pixels``): a run resumed at
    iteration 2 ends on the uninterrupted run's weights only if the checkpoint's RNG state is restored."""
    full = tiny_config("globallocal", tmp_path / "full", iters=4, init_checkpoint=None)
    assert full.method_cfg.local_pixels == 512
    full = dataclasses.replace(full, train=dataclasses.replace(full.train, checkpoint_every=2))
    a = Trainer(full, progress="none").fit().model.state_dict()
    part = dataclasses.replace(full, out_dir=str(tmp_path / "part"), train=dataclasses.replace(full.train, iters=2))
    Trainer(part, progress="none").fit()
    torch.rand(7)  # whatever ran in between moved the RNG on
    resumed = dataclasses.replace(part, train=full.train, resume="auto")
    b = Trainer(resumed, progress="none").fit().model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
