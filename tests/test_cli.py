"""The ``udalib`` command on a tiny run: a checkpoint says what it is, so evaluating it needs no --method."""

from __future__ import annotations

import json

import pytest

from tests.tiny_runs import tiny_config
from udalib import cli, methods
from udalib.train import Trainer


@pytest.fixture(scope="module")
def tiny_run(tiny_cache, tmp_path_factory):
    """A finished 2-iteration AdaptSegNet run (multi-level, with discriminators in its method state)."""
    cfg = tiny_config("adaptsegnet_multi", tmp_path_factory.mktemp("cli"), iters=2, init_checkpoint=None)
    result = Trainer(cfg, progress="none").fit()
    return cfg, result.final


def test_evaluate_reads_the_model_and_data_from_the_checkpoint(tiny_run, tmp_path, capsys):
    cfg, final = tiny_run
    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", "--checkpoint", str(cfg.final_checkpoint), "--json", str(out)]) == 0
    assert "mIoU (19)" in capsys.readouterr().out
    assert json.loads(out.read_text())["miou"] == pytest.approx(final.main_miou)  # the trainer's own evaluation


def test_evaluate_follows_data_that_moved(tiny_run, tmp_path, capsys):
    cfg, _ = tiny_run
    moved = tmp_path / "elsewhere"
    moved.symlink_to(cfg.data.source_root)
    assert cli.main(["evaluate", "--checkpoint", str(cfg.final_checkpoint), "--data-root", str(moved)]) == 0
    nowhere = tmp_path / "nowhere"
    assert cli.main(["evaluate", "--checkpoint", str(cfg.final_checkpoint), "--data-root", str(nowhere)]) == 2
    assert str(nowhere) in capsys.readouterr().err


def test_a_file_that_is_not_a_udalib_checkpoint_is_named(tmp_path, capsys):
    import torch

    bare = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, bare)
    assert cli.main(["evaluate", "--checkpoint", str(bare)]) == 2
    assert f"{bare} is not a checkpoint written by udalib" in capsys.readouterr().err


def test_train_list_names_every_method_with_a_description(capsys):
    assert cli.main(["train", "--list"]) == 0
    trained, others = capsys.readouterr().out.split("\n\n")
    assert [line.split()[0] for line in trained.splitlines()] == list(methods.REGISTRY)
    assert all(len(line.split()) > 2 for line in trained.splitlines())
    assert "source_only_adabn" in others and "advent_frozen_bn" in others


def test_pseudo_label_writes_every_label_and_exits_0(tiny_run, tmp_path, capsys):
    cfg, _ = tiny_run
    out = tmp_path / "pl"
    assert cli.main(["pseudo-label", "--checkpoint", str(cfg.final_checkpoint), "--out", str(out)]) == 0
    assert "pseudo-labels in" in capsys.readouterr().out
    assert len(list(out.rglob("*_pseudo_trainIds.png"))) == cfg.data.synthcity_counts[1]  # every target-train image
    assert cli.main(["pseudo-label", "--checkpoint", str(cfg.final_checkpoint), "--out", str(out)]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err


def test_score_folders_with_void_predictions_exits_0(tiny_run, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    gt_root = tmp_path / "gt" / "city"
    pred_root = tmp_path / "pred" / "city"
    gt_root.mkdir(parents=True)
    pred_root.mkdir(parents=True)
    Image.fromarray(np.full((4, 8), 7, np.uint8)).save(gt_root / "a_gtFine_labelIds.png")  # road
    pred = np.zeros((4, 8), np.uint8)
    pred[:, :2] = 255  # a quarter void: a quarter of road missed
    Image.fromarray(pred).save(pred_root / "a_leftImg8bit.png")
    assert cli.main(["evaluate", "--pred-dir", str(tmp_path / "pred"), "--gt-dir", str(tmp_path / "gt")]) == 0
    assert "mIoU (19)       75.0" in capsys.readouterr().out


def test_resume_as_another_method_exits_2_naming_the_fields(tiny_run, capsys):
    cfg, _ = tiny_run
    args = ["train", "--method", "minent", "--out-dir", cfg.out_dir, "--resume", "auto"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "belongs to another run" in err and "method: 'adaptsegnet_multi' in the checkpoint, 'minent' now" in err
