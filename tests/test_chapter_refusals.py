"""A chapter's refusal reads as one message naming the parameter the way papermill takes it, with no traceback:
in the executed notebook, in what papermill prints, and for a reader running the cells in JupyterLab. An
interrupted run in a notebook says the same way what it kept and how to continue, and fails its cell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from udalib import chapter
from udalib.preset_choice import LongRunError
from udalib.user_error import UserError, setting

ROOT = Path(__file__).resolve().parent.parent


def test_a_setting_in_the_forms_a_reader_types_it():
    assert setting("confirm_long_run", True) == (
        "-p confirm_long_run True (papermill, or the parameters cell) / --confirm-long-run (udalib train)"
    )
    assert setting("data_root", "PATH").endswith("/ --data-root PATH (udalib train)")


def test_a_notebook_shows_a_user_error_as_its_message_alone():
    assert UserError("iters must be a positive integer, got 0")._render_traceback_() == [
        "UserError: iters must be a positive integer, got 0"
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"iters": 0}, "iters must be a positive integer, got 0"),
        (
            {"data_root": "/nowhere/synthcity", "dataset": "synthcity"},
            "data_root /nowhere/synthcity holds no SynthCity",
        ),
        ({"preset": "paper", "device": "cpu"}, "it needs a CUDA device"),
    ],
    ids=["bad value", "missing data", "preset that cannot run here"],
)
def test_setup_refuses_with_one_user_error(tiny_cache, params, message):
    with pytest.raises(UserError, match=message):
        chapter.setup("source_only", **{"preset": "quick", **params}, quiet=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_papermill_shows_a_refused_long_run_without_a_traceback(tiny_cache, tmp_path):
    """`papermill notebooks/sdca.ipynb OUT -p iters 40000` on a CPU (the refusal comes before any data or training)."""
    out = tmp_path / "out.ipynb"
    cmd = [sys.executable, "-m", "papermill", "notebooks/sdca.ipynb", str(out), "-p", "iters", "40000"]
    proc = subprocess.run(
        [*cmd, "-p", "device", "cpu", "--no-progress-bar"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0
    cells = nbformat.read(out, as_version=4).cells
    (error,) = [o for c in cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert error.ename == LongRunError.__name__
    (line,) = error.traceback  # one block: the message alone
    assert "sdca for 40,000 iterations would take about" in line
    assert "set confirm_long_run to start it: -p confirm_long_run True (papermill" in line
    assert "udalib/" not in proc.stderr and "File " not in proc.stderr.split("Exception encountered at")[-1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_notebook_interrupt_keeps_the_checkpoint_and_fails_the_cell(tiny_cache, tmp_path):
    """The kernel's interrupt (SIGINT) mid-run: the cell fails with one message naming the kept checkpoint and
    ``-p resume auto``; the later cells do not run (nbclient and papermill stop at a failed cell)."""
    import os
    import signal
    import threading
    import time

    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    train_cell = f"""import sys
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from tests.child_run import slow_iteration
from tests.tiny_runs import tiny_config
from udalib import train
train.poly_factor = slow_iteration(train.poly_factor)
train.Trainer(tiny_config("source_only", Path({str(tmp_path)!r}), iters=20), progress="none").fit()"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(train_cell), nbformat.v4.new_code_cell("1 + 1")])
    client = NotebookClient(nb, timeout=300, kernel_name="python3")
    log = tmp_path / "source_only" / "log.jsonl"

    def interrupt_once_two_iterations_are_logged() -> None:
        while not (log.exists() and len(log.read_text().splitlines()) >= 2):
            time.sleep(0.05)
        os.kill(client.km.provisioner.process.pid, signal.SIGINT)  # what the kernel's interrupt sends

    threading.Thread(target=interrupt_once_two_iterations_are_logged, daemon=True).start()
    with pytest.raises(CellExecutionError):
        client.execute()
    (error,) = [o for o in nb.cells[0].outputs if o.output_type == "error"]
    (kept,) = (tmp_path / "source_only").glob("checkpoint_*.pt")
    assert error.ename == "RunInterrupted" and error.traceback == [f"RunInterrupted: {error.evalue}"]
    assert f"SIGINT stopped the run after iteration {int(kept.stem.split('_')[1])} of 20; kept {kept}" in error.evalue
    assert "-p resume auto (papermill" in error.evalue
    assert not nb.cells[1].get("outputs")  # the later cell did not run
