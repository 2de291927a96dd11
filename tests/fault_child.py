"""A tiny training run in its own process, for the fault-injection tests (``tests/test_fault_injection.py``).

    python -m tests.fault_child OUT_DIR ITERS [--resume auto] [--slow-writes]

One intra-op thread, so that every process computes bit for bit the same; ``--slow-writes`` writes each checkpoint
in small chunks with pauses, so that a kill often lands inside a write. A refused start prints one line and exits
with 2, as the CLI does.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import time
from pathlib import Path

import torch

from tests.tiny_runs import tiny_config
from udalib.train import Trainer

_save = torch.save


def slow_save(obj, path, *args, **kw) -> None:
    buffer = io.BytesIO()
    _save(obj, buffer, *args, **kw)
    data = buffer.getvalue()
    with open(path, "wb") as fh:
        for i in range(0, len(data), 64 * 1024):
            fh.write(data[i : i + 64 * 1024])
            fh.flush()
            time.sleep(0.01)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("iters", type=int)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--slow-writes", action="store_true")
    args = ap.parse_args()
    if args.slow_writes:
        torch.save = slow_save
    torch.set_num_threads(1)
    cfg = tiny_config("adaptsegnet_multi", Path(args.out_dir), iters=args.iters, init_checkpoint=None)
    cfg = dataclasses.replace(cfg, resume=args.resume, train=dataclasses.replace(cfg.train, checkpoint_every=1))
    try:
        Trainer(cfg, progress="none").fit()
    except (ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
