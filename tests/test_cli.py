"""The ``udalib`` command on a tiny run: a checkpoint says what it is, so evaluating it needs no --method."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_runs import shrink_resolve, tiny_config
from udalib import cli, methods, preset_choice, reproduce, results, stages
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


def test_help_answers_without_importing_torch():
    """`udalib --help` parses before any command imports its modules (measured: `time udalib --help`)."""
    code = (
        "import sys\nfrom udalib import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "examples:" in out and out.splitlines()[-1] == "no torch"


def test_every_example_of_the_help_is_true_after_a_quick_run(tiny_cache, tmp_path, monkeypatch, capsys):
    """The examples, in their order, from a fresh folder, each on the tiny set (the quick preset's resolution
    shrunk to a few images and iterations; the generated pair at a tiny size): every one exits 0."""
    tiny = shrink_resolve(iters=2)
    for module in (preset_choice, stages, reproduce):
        monkeypatch.setattr(module, "resolve", tiny)
    monkeypatch.setattr(results.store, "default_root", lambda: tmp_path / "results")  # where the store looks
    monkeypatch.chdir(tmp_path)
    examples = [line.split() for line in cli.EXAMPLES.splitlines()[1:] if not line.strip().startswith("#")]
    assert len(examples) >= 6 and all(e[0] == "udalib" for e in examples)
    for argv in examples:
        tiny_args = ["--size", "32", "64", "--counts", "4", "2", "2"] if argv[1:3] == ["data", "synthcity"] else []
        assert cli.main(argv[1:] + tiny_args) == 0, argv
        out = capsys.readouterr().out
        if argv[1:3] == ["train", "--method"]:  # the main job ends with the next things to try
            assert "next:\n  udalib train --method" in out and "udalib evaluate --checkpoint runs/quick/" in out
        if argv[1:] == ["clean"]:  # the run started over was kept aside
            assert "kept aside" in out and "runs/quick/source_only/seed0.previous-" in out
    assert (tmp_path / "results" / "quick" / "source_only.json").is_file()


def test_the_readme_quick_start_commands_are_examples_of_the_help():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = {" ".join(line.split()) for line in cli.EXAMPLES.splitlines()[1:]}
    quoted = re.findall(r"`(udalib [^`]+)`", quick_start) + re.findall(r"&& (udalib [^`\n]+)", quick_start)
    # a command's bare name (`udalib train`) and the options that only print (--list, --help) run nothing
    runnable = [c for c in quoted if len(c.split()) > 2 and "--list" not in c and "--help" not in c]
    assert runnable and all(" ".join(c.split()) in commands for c in runnable), runnable


def test_clean_lists_the_runs_kept_aside_with_sizes_and_removes_only_them(tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / "quick" / "advent").mkdir(parents=True)
    aside = runs / "quick" / "advent.previous-20260101-120000"
    (aside / "tb").mkdir(parents=True)
    (aside / "checkpoint_0000002.pt").write_bytes(b"x" * 2**20)
    (aside / "tb" / "events").write_bytes(b"x" * 2**19)
    (aside / "tb" / "old.previous-20250101-000000").write_bytes(b"")  # inside a kept run: not listed again
    assert cli.main(["clean", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"kept aside       1.5 MB  {aside}" in out and "1 old run(s), 1.5 MB; `udalib clean --remove`" in out
    assert aside.exists()  # listing deletes nothing
    assert cli.main(["clean", str(runs), "--remove"]) == 0
    assert f"removed       1.5 MB  {aside}" in capsys.readouterr().out
    assert not aside.exists() and (runs / "quick" / "advent").is_dir()
    assert cli.main(["clean", str(runs)]) == 0
    assert "no old runs kept aside" in capsys.readouterr().out


def test_the_command_that_continues_an_interrupted_run():
    argv = ["train", "--method", "advent", "--overwrite", "--resume", "x.pt", "--iters", "9"]
    assert cli._continuing(argv) == "train --method advent --iters 9 --resume auto"
    assert cli._continuing(["train", "--resume=auto"]) == "train --resume auto"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_in_udalib_train_prints_the_command_that_continues_it(tiny_cache, tmp_path):
    """A real SIGINT to `udalib train` (the quick preset shrunk to the tiny set, half a second per iteration)."""
    import signal
    import time

    root = Path(__file__).resolve().parent.parent
    script = (
        "import sys\nfrom tests.child_run import slow_iteration\nfrom tests.tiny_runs import shrink_resolve\n"
        "from udalib import cli, preset_choice, train\npreset_choice.resolve = shrink_resolve(iters=20)\n"
        "train.poly_factor = slow_iteration(train.poly_factor)\nsys.exit(cli.main())"
    )
    out = tmp_path / "run"
    argv = ["train", "--method", "source_only", "--preset", "quick", "--out-dir", str(out), "--overwrite"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *argv], cwd=root, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    log, end = out / "log.jsonl", time.time() + 300
    while not (log.exists() and len(log.read_text().splitlines()) >= 2) and time.time() < end:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    err = proc.stderr.read().decode()
    (kept,) = out.glob("checkpoint_*.pt")
    assert f"kept {kept}; continue the run with" in err and "Traceback" not in err
    continuing = f"train --method source_only --preset quick --out-dir {out} --resume auto"
    assert err.rstrip().endswith(f"\n  udalib {continuing}")


def test_ctrl_c_before_the_first_iteration_says_nothing_was_kept(tiny_run, tmp_path, monkeypatch, capsys):
    def interrupted(cfg, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "run", interrupted)
    assert cli.main(["train", "--method", "source_only", "--out-dir", str(tmp_path / "new")]) == 130
    assert f"interrupted; {tmp_path / 'new'} holds no checkpoint yet: start again" in capsys.readouterr().err
    cfg, _ = tiny_run  # a folder that holds a run: its latest checkpoint is what is kept
    assert cli.main(["train", "--method", "adaptsegnet_multi", "--out-dir", cfg.out_dir, "--resume", "auto"]) == 130
    err = capsys.readouterr().err
    assert f"kept {cfg.final_checkpoint}; continue the run with\n  udalib train --method adaptsegnet_multi" in err
