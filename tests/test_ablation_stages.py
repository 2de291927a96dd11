"""An ablation is a control of one setting along the whole chain of stages a method starts from: BAFFT's frozen-BN
step 2 starts from, and takes its pseudo-labels from, a frozen-BN step 1; the source-only start is shared."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from udalib import reproduce as rep
from udalib import stages
from udalib.results import CATALOGUE

FROZEN = CATALOGUE["bafft_frozen_bn"].overrides


@pytest.fixture
def no_training(tiny_cache, monkeypatch):
    """Stage training and pseudo-labelling replaced by records of what would be made (a stage's final checkpoint
    is an empty file)."""
    made = SimpleNamespace(trained=[], labelled=[])

    def fake_run(cfg, *, progress, ablation=None):
        made.trained.append((cfg, ablation))
        cfg.final_checkpoint.parent.mkdir(parents=True, exist_ok=True)
        cfg.final_checkpoint.touch()

    monkeypatch.setattr(stages, "run", fake_run)
    monkeypatch.setattr(stages, "load_trained", lambda ckpt, device: ckpt)
    monkeypatch.setattr(stages, "build_domains", lambda stage: SimpleNamespace(pseudo_label_loader=lambda: stage))
    monkeypatch.setattr(stages, "generate_pseudo_labels", lambda model, loader, out, **kw: made.labelled.append(loader))
    return made


def test_frozen_bn_bafft_step2_starts_from_and_labels_with_a_frozen_bn_step1(no_training):
    cfg = rep.measured_config("bafft_frozen_bn", "quick", 0)
    assert cfg.train.bn_mode == "frozen" and cfg.train.init_checkpoint == "stage:bafft_step1"
    resolved = stages.resolve_stages(cfg, ablation=FROZEN)
    ((step1, carried),) = no_training.trained  # one stage trained, with the ablation carried to its own stages
    assert step1.method == "bafft_step1" and step1.train.bn_mode == "frozen" and carried == FROZEN
    plain = stages.stage_config(rep.measured_config("bafft", "quick", 0), "bafft_step1")
    assert plain.train.bn_mode == "trainable" and Path(plain.out_dir) != Path(step1.out_dir)
    assert resolved.train.init_checkpoint == str(step1.final_checkpoint)
    assert resolved.data.pseudo_label_dir == str(step1.final_checkpoint.parent / "pseudo_labels")
    (labelled_with,) = no_training.labelled
    assert labelled_with.train.bn_mode == "frozen" and labelled_with.out_dir == step1.out_dir


def test_reproduce_resolves_an_ablations_stages_with_its_overrides(tiny_cache, monkeypatch):
    class Started(Exception):
        pass

    def fake_run(cfg, *, progress, ablation=None):
        raise Started(ablation)

    monkeypatch.setattr(stages, "run", fake_run)
    with pytest.raises(Started) as started:
        rep.measure("bafft_frozen_bn", "quick", 0)
    assert started.value.args == ({"train": {"bn_mode": "frozen"}},)


def test_a_stage_that_learns_from_source_alone_is_shared_by_a_method_and_its_controls(tiny_cache):
    for name, stage in (("bafft_frozen_bn", "source_only"), ("sdca_frozen_bn", "sdca_source")):
        entry = CATALOGUE[name]
        ablated = stages.stage_config(rep.measured_config(name, "quick", 0), stage, entry.overrides)
        plain = stages.stage_config(rep.measured_config(entry.of, "quick", 0), stage)
        assert ablated == plain and ablated.train.bn_mode != "frozen"


def test_a_method_override_reaches_only_stages_whose_config_has_the_field(tiny_cache):
    entry = CATALOGUE["globallocal_all_pixels"]
    cfg = rep.measured_config(entry.name, "quick", 0)
    assert stages.stage_config(cfg, "globallocal", entry.overrides).method_cfg.local_pixels is None
    assert stages.stage_config(cfg, "globallocal").method_cfg.local_pixels == 512
    assert stages.stage_config(cfg, "advent", entry.overrides) == stages.stage_config(cfg, "advent")
