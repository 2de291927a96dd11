"""DDP on the CPU: two processes (gloo) train as one with the doubled batch, only rank 0 writes, resume works.

The reference is one process with gradient accumulation over two micro-batches, each drawn as one rank draws it
(``tests/child_run.py --as-ranks 2``): the trainer averages the ranks' gradients, accumulation averages the
micro-batches', so both take the same step. BatchNorm is frozen in both (per-rank batch statistics would differ
from one process's), and the quick transforms draw no random augmentation.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
ITERS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(out: Path, method: str, *extra: str, world: int = 1) -> None:
    """One run of `world` processes (ranks) with the trainer's torchrun environment; waits for all."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        if world > 1:
            env.update(
                WORLD_SIZE=str(world),
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
            )
        cmd = [sys.executable, "-m", "tests.child_run", str(out), str(ITERS), "--method", method, "--frozen-bn", *extra]
        procs.append(
            subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()


def _state(out: Path, method: str, step: int = ITERS) -> dict:
    return torch.load(out / method / f"checkpoint_{step:07d}.pt", weights_only=True)


@pytest.mark.parametrize("method", ["source_only", "adaptsegnet_multi"])
def test_two_ranks_take_the_steps_of_one_process_with_the_doubled_batch(tiny_cache, tmp_path, method):
    _run(tmp_path / "ddp", method, world=2)
    _run(tmp_path / "one", method, "--accum", "2", "--as-ranks", "2")
    ddp, one = _state(tmp_path / "ddp", method), _state(tmp_path / "one", method)
    for part in ("model", "method"):  # the segmenter, and the discriminators of AdaptSegNet
        for (name, a), b in zip(ddp[part].items(), one[part].values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=f"{part}.{name}")
    folder = tmp_path / "ddp" / method
    written = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert written == [
        *(f"checkpoint_{s:07d}.pt" for s in range(1, ITERS + 1)),
        "config.json",
        "evals.jsonl",
        "log.jsonl",
        "metrics.json",
    ]  # rank 0's files only, once
    assert len((folder / "log.jsonl").read_text().splitlines()) == ITERS  # one log line per iteration, not two


def test_resume_under_ddp_ends_where_an_uninterrupted_ddp_run_ends(tiny_cache, tmp_path):
    _run(tmp_path / "full", "adaptsegnet_multi", world=2)
    part = tmp_path / "part" / "adaptsegnet_multi"
    _run(tmp_path / "part", "adaptsegnet_multi", world=2)
    for later in range(2, ITERS + 1):  # keep only the first checkpoint: as if both ranks were stopped there
        (part / f"checkpoint_{later:07d}.pt").unlink()
    _run(tmp_path / "part", "adaptsegnet_multi", "--resume", "auto", world=2)
    full, resumed = _state(tmp_path / "full", "adaptsegnet_multi"), _state(tmp_path / "part", "adaptsegnet_multi")
    for part_name in ("model", "method"):
        for (name, a), b in zip(full[part_name].items(), resumed[part_name].values()):
            assert torch.equal(a, b), f"{part_name}.{name}"
