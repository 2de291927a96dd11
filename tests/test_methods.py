"""Every registered method, one CPU step on tiny SynthCity batches, plus the adversarial
component's gradient isolation: the generator term never trains a discriminator, the discriminator term never
trains the segmenter."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_runs import tiny_config

from udalib import methods
from udalib.data.domains import build_domains
from udalib.data.streams import Batch
from udalib.inference import level_maps
from udalib.methods.adaptsegnet import SINGLE_LEVEL, AdaptSegNet
from udalib.methods.output_alignment import OutputDiscriminators
from udalib.models import build_model
from udalib.models.trained import build_segmenter
from udalib.presets import resolve


def _batches(cfg):
    dom = build_domains(cfg)
    take = lambda ds: Batch(*[torch.stack([ds[i][j] for i in range(2)]) for j in (0, 1)], meta={})  # noqa: E731
    return dom, take(dom.labelled), take(dom.target_train)


def _method(cfg, model):
    return methods.build_method(
        cfg.method, cfg.method_cfg, 19, feature_dim=model.feature_channels, total_iters=cfg.train.iters
    )


@pytest.mark.parametrize("name", sorted(methods.REGISTRY))
def test_one_step_of_every_method(name, tiny_cache, tmp_path):
    cfg = tiny_config(name, tmp_path, init_checkpoint=None)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, pseudo_label_dir=None, source_sampling="uniform"))
    torch.manual_seed(0)
    model = build_segmenter(cfg.train, 19)
    method = _method(cfg, model)
    dom, src, tgt = _batches(cfg)
    method.prepare(model, dom.labelled_eval_loader(), torch.device("cpu"))
    model.train()
    losses = method.training_step(model, src, tgt if method.uses_target else None, 0, lambda loss: loss.backward())
    assert losses and all(torch.isfinite(v).all() for v in losses.values()), losses
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient for {missing[:5]}"
    for opt in method.aux_optimizers():
        for group in opt.param_groups:
            assert all(p.grad is not None for p in group["params"]), f"{name}: an auxiliary network got no grad"
    clone = _method(cfg, model)
    clone.load_state_dict(method.state_dict())
    for (k, a), b in zip(method.state_dict().items(), clone.state_dict().values()):
        assert torch.equal(a, b), k


def _model_and_maps():
    torch.manual_seed(0)
    model = build_model("small", 5, multi_level=True)
    xs, xt = torch.randn(2, 3, 32, 64), torch.randn(2, 3, 32, 64)
    return model, level_maps(model(xs), (32, 64), lambda p: p), level_maps(model(xt), (32, 64), lambda p: p)


def test_adversarial_term_does_not_reach_the_discriminator():
    model, _, maps_t = _model_and_maps()
    disc = OutputDiscriminators(5, {"aux": 0.0002, "main": 0.001}, lr=1e-4, gan="bce")
    disc.generator_step(maps_t).backward()
    assert all(p.grad is None for p in disc.parameters())
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_discriminator_loss_does_not_reach_the_segmenter():
    model, maps_s, maps_t = _model_and_maps()
    disc = OutputDiscriminators(5, {"aux": 0.0002, "main": 0.001}, lr=1e-4, gan="ls")
    logs = disc.discriminator_step(maps_s, maps_t, lambda loss: loss.backward())
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None for p in disc.parameters())
    assert set(logs) >= {"d_main", "d_aux", "d_main_src_out", "d_main_tgt_out"}


def test_single_level_builds_only_the_main_discriminator():
    m = AdaptSegNet(SINGLE_LEVEL, 19)
    assert list(m.disc.nets) == ["main"] and len(m.aux_optimizers()) == 1


def _paper(method):
    return resolve(method, "paper", data_root="/gta5", target_root="/cityscapes", device="cuda")


def test_paper_presets_carry_the_published_weights():
    multi = _paper("adaptsegnet_multi")
    m = multi.method_cfg
    assert (m.lambda_seg_aux, m.lambda_adv_aux, m.lambda_adv_main, m.gan) == (0.1, 0.0002, 0.001, "bce")
    assert (multi.train.iters, multi.train.poly_horizon) == (150_000, 250_000) and multi.train.multi_level
    single = _paper("adaptsegnet_single")
    assert (single.method_cfg.lambda_adv_main, single.method_cfg.lambda_adv_aux) == (0.001, 0.0)
    assert not single.train.multi_level
    ls = _paper("adaptsegnet_ls").method_cfg
    assert (ls.lambda_adv_main, ls.gan) == (0.01, "ls")
    adv = _paper("advent")
    assert (adv.method_cfg.lambda_adv_main, adv.method_cfg.lambda_adv_aux, adv.train.iters) == (0.001, 0.0002, 120_000)
    ment = _paper("minent").method_cfg
    assert (ment.lambda_ent_main, ment.lambda_ent_aux) == (0.001, 0.0002)


def test_quick_weights_follow_the_one_scaling_rule():
    """Quick = paper × the rule of ``presets.QUICK_ADVERSARIAL`` / ``QUICK_ENTROPY``, for every method alike."""
    for name in ("adaptsegnet_single", "adaptsegnet_multi", "adaptsegnet_ls", "advent", "globallocal"):
        quick, paper = resolve(name, "quick").method_cfg, _paper(name).method_cfg
        assert quick.lambda_adv_main == pytest.approx(10 * paper.lambda_adv_main), name
        assert quick.lambda_adv_aux == pytest.approx(10 * paper.lambda_adv_aux), name
        assert quick.lr_d == pytest.approx(2 * paper.lr_d), name
    quick, paper = resolve("minent", "quick").method_cfg, _paper("minent").method_cfg
    assert (quick.lambda_ent_main, quick.lambda_ent_aux) == pytest.approx(
        (100 * paper.lambda_ent_main, 100 * paper.lambda_ent_aux)
    )


def test_local_branch_pixel_sample_keeps_positions_aligned():
    from udalib.methods.globallocal import GlobalLocal

    quick, paper = resolve("globallocal", "quick").method_cfg, _paper("globallocal").method_cfg
    assert quick.local_pixels == 512 and paper.local_pixels is None  # the paper scores every pixel
    b, k, h, w = 2, 3, 4, 6
    pos = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    code = pos + 100 * torch.arange(k).view(1, k, 1, 1) + 1000 * torch.arange(b).view(b, 1, 1, 1)
    maps = {"main": code, "aux": -code}
    mask = {lvl: (pos[0, 0] % 3 == 0).expand(b, h, w) for lvl in maps}
    method = GlobalLocal(dataclasses.replace(quick, local_pixels=50), k)
    torch.manual_seed(0)
    picked, picked_mask = method.local_sample(maps, mask)
    assert picked["main"].shape == (b, k, 50, 1) and picked_mask["main"].shape == (b, 50, 1)
    where = picked["main"][:, 0] - 1000 * torch.arange(b).view(b, 1, 1)  # (B, n, 1) sampled positions
    for c in range(k):  # every channel of a pixel comes from the same position, in each image
        assert torch.equal(picked["main"][:, c], where + 100 * c + 1000 * torch.arange(b).view(b, 1, 1))
    assert torch.equal(picked["aux"], -picked["main"])  # the same positions at both levels
    assert torch.equal(picked_mask["main"], where % 3 == 0)  # the void mask follows its pixels
    assert 0 <= where.min() and where.max() < h * w
    every = GlobalLocal(dataclasses.replace(quick, local_pixels=None), k)
    assert every.local_sample(maps, mask) == (maps, mask)


class _PixelwiseSegmenter(torch.nn.Module):
    """A 1×1 conv at the input resolution: each output pixel depends on its own input pixel alone."""

    def __init__(self, k: int):
        super().__init__()
        self.head = torch.nn.Conv2d(3, k, 1)

    def forward(self, image):
        from udalib.models.output import SegOutput

        logits = self.head(image)
        return SegOutput(logits=logits, features=logits, aux_logits=None)


@pytest.mark.parametrize("mask_source_void", [True, False])
def test_the_local_discriminator_never_sees_source_void_pixels(mask_source_void):
    """Global-local's local source term is a mean over the source pixels that carry a class (our reading of Yarram
    et al.): changing what the segmenter outputs on void pixels (label 255) leaves it unchanged, and it changes
    when the mask is off. The global (patch) term sees every pixel either way."""
    from udalib.methods.globallocal import GlobalLocal

    quick = resolve("globallocal", "quick").method_cfg
    cfg = dataclasses.replace(quick, local_pixels=None, lambda_local_aux=0.0, mask_source_void=mask_source_void)
    k = 3
    torch.manual_seed(0)
    model, method = _PixelwiseSegmenter(k), GlobalLocal(dataclasses.replace(cfg, lambda_adv_aux=0.0), k)
    label = torch.randint(k, (2, 32, 32))
    label[:, :, :16] = 255  # the left half of every source image is void
    image = torch.randn(2, 3, 32, 32)
    target = Batch(torch.randn(2, 3, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long), meta={})
    changed = image.clone()
    changed[:, :, :, :16] = torch.randn(2, 3, 32, 16) * 5
    logs = [
        method.training_step(model, Batch(x, label, meta={}), target, 0, lambda loss: loss.backward())
        for x in (image, changed)
    ]
    assert logs[0]["d_main"] != logs[1]["d_main"]
    assert (logs[0]["local_d_main"] == logs[1]["local_d_main"]) == mask_source_void
