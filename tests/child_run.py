"""A tiny training run in its own process, for the fault-injection and DDP tests.

    python -m tests.child_run OUT_DIR ITERS [--method M] [--resume auto] [--slow-writes] [--frozen-bn]
        [--accum N] [--as-ranks N] [--checkpoint-every N] [--slow-steps]

One intra-op thread, so that every process computes bit for bit the same. ``--slow-writes`` writes each checkpoint
in small chunks with pauses, so that a kill often lands inside a write. Under ``torchrun``-style environment
variables (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT) the run is one rank of a DDP run. ``--as-ranks N`` makes a
single process draw, micro-batch after micro-batch, the batches that N ranks would draw (the DDP test's reference,
with ``--accum N``). ``--slow-steps`` pauses after every iteration, so that a signal lands mid-run. A refused
start prints one line and exits with 2, and an interrupted run with 128 + the signal, as the CLI does.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import sys
import time
from pathlib import Path

import torch

from tests.tiny_runs import tiny_config
from udalib import train as train_module
from udalib.data.domains import Domains
from udalib.train import Trainer
from udalib.user_error import UserError

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


def slow_iteration(poly_factor):
    """The trainer's poly_factor (called once at the start of every iteration), half a second later."""

    def slow(*args):
        time.sleep(0.5)
        return poly_factor(*args)

    return slow


def draw_as_ranks(ranks: int) -> None:
    """Patch the streams so that micro-batch k of an iteration is the batch rank k would draw: the trainer seeds
    rank r's streams with ``seed * 7 + r`` and ``seed * 13 + r``, and passes rank 0's seed in one process."""

    def interleaved(original):
        def stream(self: Domains, batch: int, *, seed: int, start_step: int):
            streams = [original(self, batch, seed=seed + r, start_step=start_step // ranks) for r in range(ranks)]
            return (next(s) for s in itertools.cycle(streams))

        return stream

    Domains.labelled_stream = interleaved(Domains.labelled_stream)
    Domains.target_stream = interleaved(Domains.target_stream)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("iters", type=int)
    ap.add_argument("--method", default="adaptsegnet_multi")
    ap.add_argument("--resume", default=None)
    ap.add_argument("--slow-writes", action="store_true")
    ap.add_argument("--frozen-bn", action="store_true")
    ap.add_argument("--accum", type=int, default=1)
    ap.add_argument("--as-ranks", type=int, default=1)
    ap.add_argument("--checkpoint-every", type=int, default=1)
    ap.add_argument("--slow-steps", action="store_true")
    args = ap.parse_args()
    if args.slow_steps:
        train_module.poly_factor = slow_iteration(train_module.poly_factor)
    if args.slow_writes:
        torch.save = slow_save
    if args.as_ranks > 1:
        draw_as_ranks(args.as_ranks)
    torch.set_num_threads(1)
    cfg = tiny_config(args.method, Path(args.out_dir), iters=args.iters, init_checkpoint=None)
    train = dataclasses.replace(cfg.train, checkpoint_every=args.checkpoint_every, accum=args.accum)
    if args.frozen_bn:  # BN statistics of a micro-batch would differ between one process and two ranks
        train = dataclasses.replace(train, bn_mode="frozen")
    try:
        Trainer(dataclasses.replace(cfg, resume=args.resume, train=train), progress="none").fit()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except (ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
