"""Fault injection on tiny runs in separate processes: kill -9 anywhere (checkpoint writes included), then resume
and finish bit for bit where an uninterrupted run finishes; Ctrl-C (SIGINT) and SIGTERM mid-run keep the
iteration's checkpoint and say how to continue; two runs started in one folder at once.

The counts these tests try are printed (``pytest -s``) and quoted in the README's reliability section.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
ITERS = 6
KILLS = 8


def _child(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tests.child_run", str(out), str(ITERS), *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _final_weights(out: Path) -> dict:
    state = torch.load(out / "adaptsegnet_multi" / f"checkpoint_{ITERS:07d}.pt", weights_only=True)
    return {"model": state["model"], "method": state["method"]}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(x, y) for part in a for x, y in zip(a[part].values(), b[part].values()))


@pytest.fixture(scope="module")
def reference(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = _child(out)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    return _final_weights(out)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> bool:
    """Poll until `condition()` holds (True) or the process ends (False)."""
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_kill_9_anywhere_then_resume_ends_where_an_uninterrupted_run_ends(reference, tmp_path):
    """Half of the kills wait for a checkpoint write to be under way, the other half strike at a random moment of
    a started run (data, model, iterations, evaluation)."""
    rng = random.Random(0)
    out = tmp_path / "killed"
    folder = out / "adaptsegnet_multi"
    kills = {"during a checkpoint write": 0, "elsewhere": 0}
    for i in range(KILLS):
        started = any(folder.glob("checkpoint_*.pt"))
        proc = _child(out, *(["--resume", "auto"] if started else []), "--slow-writes")
        if i % 2 == 0:
            target, ready = "during a checkpoint write", lambda: any(folder.glob(".checkpoint_*.tmp"))
        else:
            target, ready = "elsewhere", lambda: (folder / ".lock").exists()
        if not _wait_for(ready, proc):
            break  # the run finished first
        time.sleep(rng.uniform(0.0, 0.3 if i % 2 == 0 else 3.0))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills[target] += 1
        for ckpt in folder.glob("checkpoint_*.pt"):  # whatever was interrupted, no real name holds half a file
            torch.load(ckpt, weights_only=True)
    if not (folder / f"checkpoint_{ITERS:07d}.pt").exists():  # finish the run
        started = any(folder.glob("checkpoint_*.pt"))
        final = _child(out, *(["--resume", "auto"] if started else []))
        assert final.wait(timeout=600) == 0, final.stderr.read()
    print(f"\nkill -9: {sum(kills.values())} kills ({kills}); final weights equal the uninterrupted run's")
    assert kills["during a checkpoint write"] >= KILLS // 4
    assert _same(_final_weights(out), reference)


def test_two_runs_started_in_one_folder_at_once(tiny_cache, tmp_path, reference):
    first, second = _child(tmp_path), _child(tmp_path)
    codes = sorted([first.wait(timeout=600), second.wait(timeout=600)])
    errors = first.stderr.read() + second.stderr.read()
    assert codes == [0, 2], errors
    assert "is in use by another run (process" in errors or "already holds checkpoints" in errors
    assert _same(_final_weights(tmp_path), reference)  # the run that went on is whole
    assert not (tmp_path / "adaptsegnet_multi" / ".lock").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_keeps_its_iteration_and_resume_auto_ends_where_an_uninterrupted_run_ends(
    reference, tmp_path, signum
):
    """The run checkpoints only at its end (so the kept checkpoint is the signal's), one iteration every half
    second; the signal comes once two iterations are logged."""
    out = tmp_path / "interrupted"
    folder = out / "adaptsegnet_multi"
    proc = _child(out, "--checkpoint-every", str(100 * ITERS), "--slow-steps")
    logged = folder / "log.jsonl"
    assert _wait_for(lambda: logged.exists() and len(logged.read_text().splitlines()) >= 2, proc), proc.stderr.read()
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == 128 + signum
    err = proc.stderr.read()
    (kept,) = sorted(folder.glob("checkpoint_*.pt"))
    step = torch.load(kept, weights_only=True)["step"]
    assert 2 <= step < ITERS
    name = signal.Signals(signum).name
    assert f"{name}: the run stops after the iteration under way" in err
    assert f"{name} stopped the run after iteration {step} of {ITERS}; kept {kept}; continue the run with " in err
    assert "-p resume auto (papermill, or the parameters cell) / --resume auto (udalib train)" in err
    assert "Traceback" not in err
    resumed = _child(out, "--resume", "auto")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    assert _same(_final_weights(out), reference)
