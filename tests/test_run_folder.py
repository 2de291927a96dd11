"""Nothing lost, nothing silently wrong in a run's folder: resume lineage, starting over, locks, NaN, a full disk.

Each test reproduces a failure a careless or unlucky user met (see the reliability issue) on a tiny run.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.tiny_runs import tiny_config
from udalib import cli, stages
from udalib import train as train_module
from udalib.run_folder import LOCK_FILE, RunFolder, RunFolderError
from udalib.train import DiskFullError, NonFiniteLossError, Trainer


def _fit(cfg, **changes):
    return Trainer(dataclasses.replace(cfg, **changes), progress="none").fit()


@pytest.fixture
def tiny(tiny_cache, tmp_path):
    return tiny_config("source_only", tmp_path, iters=2)


def test_resume_auto_without_a_checkpoint_says_nothing_to_resume(tiny):
    with pytest.raises(RunFolderError, match="nothing to resume"):
        _fit(tiny, resume="auto")


def test_resume_auto_of_a_finished_run_says_so(tiny):
    _fit(tiny)
    with pytest.raises(RunFolderError, match=r"finished run \(2 of 2 iterations\)"):
        _fit(tiny, resume="auto")


def test_overwrite_moves_the_previous_run_aside_and_resume_continues_the_new_one(tiny):
    _fit(tiny)
    first = torch.load(tiny.final_checkpoint, weights_only=True)["model"]
    _fit(tiny, overwrite=True, train=dataclasses.replace(tiny.train, seed=5))
    asides = list(tiny.final_checkpoint.parent.parent.glob("source_only.previous-*"))
    assert len(asides) == 1 and (asides[0] / tiny.final_checkpoint.name).is_file()  # moved, not deleted
    kept = torch.load(asides[0] / tiny.final_checkpoint.name, weights_only=True)["model"]
    assert all(torch.equal(a, b) for a, b in zip(first.values(), kept.values()))
    assert [p.name for p in RunFolder(tiny).checkpoints()] == ["checkpoint_0000002.pt"]  # only the new run's
    stored = json.loads((tiny.final_checkpoint.parent / "config.json").read_text())
    assert stored["train"]["seed"] == 5


def test_resume_as_another_run_is_refused_before_any_stage_is_trained(tiny, tmp_path, monkeypatch):
    _fit(tiny)
    other = dataclasses.replace(tiny_config("oracle", tmp_path, iters=4, seed=7), out_dir=tiny.out_dir, resume="auto")
    monkeypatch.setattr(stages, "resolve_stages", lambda *a, **k: pytest.fail("a stage was resolved"))
    with pytest.raises(RunFolderError, match="belongs to another run") as err:
        stages.run(other, progress="none")
    assert "method: 'source_only' in the checkpoint, 'oracle' now" in str(err.value)
    assert "train.seed: 0 in the checkpoint, 7 now" in str(err.value)
    longer = dataclasses.replace(tiny, resume="auto", train=dataclasses.replace(tiny.train, iters=3, poly_horizon=4))
    with pytest.raises(RunFolderError, match="train.poly_horizon"):
        _fit(longer)  # a longer run may not change its schedule's horizon under it
    assert _fit(
        dataclasses.replace(longer, train=dataclasses.replace(longer.train, poly_horizon=tiny.train.poly_horizon))
    )


def test_a_failed_start_leaves_the_folder_as_it_was(tiny):
    _fit(tiny)
    folder = tiny.final_checkpoint.parent
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    broken = dataclasses.replace(tiny.train, init_checkpoint="/nope.pt")
    with pytest.raises(FileNotFoundError, match="/nope.pt"):
        _fit(tiny, overwrite=True, train=broken)  # would move the old run aside, but fails first
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert not list(folder.parent.glob("*.previous-*"))


def test_a_second_run_in_a_folder_in_use_is_refused_with_the_holders_pid(tiny):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tiny.final_checkpoint.parent
        folder.mkdir(parents=True)
        (folder / LOCK_FILE).write_text(str(holder.pid))
        with pytest.raises(RunFolderError, match=f"in use by another run \\(process {holder.pid}"):
            _fit(tiny)
        assert not list(folder.glob("checkpoint_*"))
    finally:
        holder.kill()
        holder.wait()
    _fit(tiny)  # the holder has ended: its stale lock is taken over
    assert not (tiny.final_checkpoint.parent / LOCK_FILE).exists()  # and released at the end


def test_a_nan_loss_stops_the_run_keeps_the_last_finite_checkpoint_and_records_nothing(tiny, monkeypatch):
    real = train_module.build_method

    def poisoned(*args, **kw):
        method = real(*args, **kw)
        step_fn = method.training_step

        def training_step(model, source, target, step, backward):
            logs = step_fn(model, source, target, step, backward)
            return {**logs, "seg": logs["seg"] * float("nan")} if step == 2 else logs

        method.training_step = training_step
        return method

    monkeypatch.setattr(train_module, "build_method", poisoned)
    cfg = dataclasses.replace(tiny, train=dataclasses.replace(tiny.train, iters=4, checkpoint_every=2))
    with pytest.raises(NonFiniteLossError, match=r"iteration 3: the loss term 'seg' is nan.*checkpoint_0000002.pt"):
        _fit(cfg)
    folder = cfg.final_checkpoint.parent
    assert [p.name for p in RunFolder(cfg).checkpoints()] == ["checkpoint_0000002.pt"]
    assert not (folder / "metrics.json").exists()
    state = torch.load(folder / "checkpoint_0000002.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("iters", [4, 6], ids=["at the final checkpoint", "mid-run"])
def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tiny, monkeypatch, iters):
    real_save, calls = torch.save, []

    def save(obj, path, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            with open(path, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(train_module.torch, "save", save)
    cfg = dataclasses.replace(tiny, train=dataclasses.replace(tiny.train, iters=iters, checkpoint_every=2))
    with pytest.raises(DiskFullError, match=r"disk full.*Kept: the previous checkpoints \['checkpoint_0000002.pt'\]"):
        _fit(cfg)
    folder = cfg.final_checkpoint.parent
    assert sorted(p.name for p in folder.iterdir() if not p.is_dir()) == [
        "checkpoint_0000002.pt",
        "config.json",
        "evals.jsonl",
        "log.jsonl",
    ]  # no partial temporary file left
    monkeypatch.setattr(train_module.torch, "save", real_save)
    assert _fit(cfg, resume="auto").final is not None  # space freed: the run continues


def test_resume_auto_falls_back_to_the_checkpoint_before_a_corrupt_one(tiny):
    cfg = dataclasses.replace(tiny, train=dataclasses.replace(tiny.train, iters=4, checkpoint_every=2))
    _fit(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, iters=3)))
    last = RunFolder(cfg).checkpoints()[-1]
    last.write_bytes(last.read_bytes()[:1000])  # cut by a crash outside udalib's atomic writes
    assert _fit(cfg, resume="auto").final is not None


def test_cli_exit_codes_and_one_line_messages(tiny, capsys):
    args = ["train", "--method", "source_only", "--out-dir", tiny.out_dir, "--iters"]
    for bad in ("0", "-5"):
        assert cli.main(args + [bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"udalib train: error: iters must be a positive integer, got {bad}"
    assert cli.main(["train", "--method", "source_only_adabn"]) == 2
    assert "udalib reproduce --methods source_only_adabn" in capsys.readouterr().err
    os.makedirs(tiny.out_dir)
    assert cli.main(["train", "--method", "source_only", "--out-dir", tiny.out_dir, "--resume", "auto"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_a_config_field_added_later_at_its_default_is_the_same_run(tmp_path):
    """Cached stages are named by the config without default-valued data/train fields, and a stored config that
    lacks a field added since then matches it while the field holds its default."""
    import dataclasses

    from udalib.presets import resolve
    from udalib.run_folder import config_differences
    from udalib.stages import cached_run

    cfg = resolve("source_only", "quick", out_dir=str(tmp_path / "run"))
    stored = cfg.to_dict()
    del stored["train"]["compile"]  # a run stored before TrainConfig.compile existed
    assert config_differences(stored, cfg) == {}
    compiled = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile="eager"))
    assert "train.compile" in config_differences(stored, compiled)  # a non-default value is another run
    assert "compile" not in cfg.identity()["train"] and cfg.identity()["train"]["iters"] == 1200
    assert cached_run(cfg, "s").out_dir != cached_run(compiled, "s").out_dir
