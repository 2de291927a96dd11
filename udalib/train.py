"""The one trainer every method uses (iteration-based, as the seeds are).

It owns: the segmenter's SGD optimiser (heads at 10× LR), the poly schedule with an early stop, autocast
(bf16 on CUDA; fp16 with a scaler as an option), channels_last, gradient accumulation, atomic checkpoints with
everything needed to resume the same run, periodic target-val evaluation (last and, labelled as such, best),
TensorBoard scalars, a progress bar, and DDP when started with ``torchrun``. A method plugs in through
``udalib.methods.base.Method``; the trainer never branches on which method it runs.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .config import RunConfig, cache_root, resolve_device
from .data.domains import Domains, build_domains
from .data.labels import get_protocol
from .data.preflight import preflight
from .evaluate import EvalResult, evaluate
from .files import atomic_write, write_json
from .methods import build_method
from .methods.base import Method
from .models.checkpoints import read_checkpoint
from .models.trained import TRAINER_KEYS, build_segmenter, load_weights
from .record import Record, data_identity
from .run_folder import RunFolder, RunFolderError
from .user_error import UserError, setting

# ----------------------------------------------------------------------------------------------------------------
# Distributed helpers (torchrun): each rank draws its own batches; gradients are averaged before every step.


def _dist_setup(device: torch.device) -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _average_gradients(params: list[nn.Parameter], world: int) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    if world == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


# ----------------------------------------------------------------------------------------------------------------


def poly_factor(step: int, horizon: int, power: float) -> float:
    """LR multiplier (1 − step/horizon)^power; the horizon lies beyond the stop, so it never reaches 0."""
    return (1.0 - min(step, horizon) / horizon) ** power


def _autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def git_revision() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class TrainResult:
    out_dir: Path
    final: EvalResult | None
    best: tuple[int, EvalResult] | None  # (step, result): selected on target val, i.e. an oracle choice
    history: list[dict] = field(default_factory=list)  # logged losses and learning rates
    evals: list[dict] = field(default_factory=list)  # periodic target-val mIoU
    wall_s: float = 0.0
    model: nn.Module | None = None
    method: Method | None = None


@dataclass(frozen=True)
class Cadence:
    """What falls due after iteration `done`: logging, a checkpoint, an evaluation; all three after the last one."""

    log_every: int
    checkpoint_every: int
    eval_every: int
    last: int

    def due(self, done: int) -> tuple[bool, bool, bool]:
        end = done == self.last
        return (
            end or done % self.log_every == 0,
            end or done % self.checkpoint_every == 0,
            end or done % self.eval_every == 0,
        )


class _Parts(NamedTuple):
    """What a run is built from, before anything is written: data, model, method, optimiser, precision."""

    domains: Domains
    model: nn.Module
    method: Method
    opt: torch.optim.Optimizer
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: the run stops, its last checkpoint (finite) is kept, nothing is recorded."""


class DiskFullError(OSError):
    """A checkpoint could not be written for lack of space: the previous checkpoint and the log are kept."""


class RunInterrupted(UserError):
    """SIGINT (Ctrl-C, a notebook's interrupt) or SIGTERM stopped the run after an iteration: its checkpoint is kept,
    and ``--resume auto`` continues the run exactly. ``udalib`` exits with 128 + the signal's number."""

    def __init__(self, message: str, *, signum: int, checkpoint: Path):
        super().__init__(message)
        self.exit_code = 128 + signum
        self.checkpoint = checkpoint


class _StopRequests:
    """SIGINT and SIGTERM while a run trains: the first asks the loop to stop once the iteration under way is done
    (it writes that iteration's checkpoint, atomically as every other); a second one stops at once, keeping the
    checkpoints already written. Only in the main thread of a single process: DDP ranks would stop at different
    iterations and wait for each other forever."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopRequests:
        if self.enabled:
            self.signum = None
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: the run stops after the iteration under way and keeps its checkpoint "
            "(a second Ctrl-C stops at once, keeping only the checkpoints already written)",
            file=sys.stderr,
            flush=True,
        )


class Trainer:
    def __init__(self, cfg: RunConfig, *, progress: str = "bar"):
        self.cfg = cfg
        self.progress = progress  # bar | lines | none
        self.device = resolve_device(cfg.train.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {cfg.train.device!r} asked for CUDA, which this machine does not have")
        self.rank, self.world = _dist_setup(self.device)
        self.protocol = get_protocol(cfg.data.protocol)
        self.out_dir = Path(cfg.out_dir)
        self.folder = RunFolder(cfg)
        self.stop = _StopRequests(enabled=self.world == 1)

    # -- checkpoints -------------------------------------------------------------------------------------------
    def save_checkpoint(self, step: int, model, opt, method, scaler) -> Path:
        state = {
            "step": step,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "aux_optimizers": [o.state_dict() for o in method.aux_optimizers()],
            "method": method.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": _np_state(),
                "python": _py_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "config": json.dumps(self.cfg.to_dict(), default=str),
            "num_classes": self.protocol.num_classes,
            "backbone": self.cfg.train.backbone,
        }
        path = self.cfg.checkpoint_path(step)
        try:
            return atomic_write(path, lambda tmp: torch.save(state, tmp))
        except (OSError, RuntimeError) as err:
            # torch reports a full disk as a RuntimeError from its zip writer ("file write failed")
            if not _out_of_space(err, path.parent):
                raise
            kept = [p.name for p in self.folder.checkpoints()]
            raise DiskFullError(
                errno.ENOSPC,
                f"disk full: the checkpoint of iteration {step} could not be written to {path.parent}. "
                f"Kept: the previous checkpoints {kept or 'none'} and the log (log.jsonl). Free some space and "
                "continue with --resume auto",
            ) from err

    def _resume(self, candidates: list[Path], model, opt, method, scaler) -> int:
        """Load the first readable candidate that belongs to this run; returns its iteration."""
        for path in candidates:
            try:
                state = read_checkpoint(path, require=TRAINER_KEYS)
            except ValueError as err:
                print(f"cannot resume from {path} ({err}); trying the checkpoint before it")
                continue
            self.folder.check_same_run(state["config"], path)
            start = self._load(state, model, opt, method, scaler)
            print(f"resumed from {path} at iteration {start}")
            return start
        raise RunFolderError(f"no readable checkpoint to resume from in {self.out_dir}")

    # -- the loop ----------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train the run. Everything is checked and built before the folder is touched (a failed start leaves it as
        it was); the folder is locked while the run writes there."""
        candidates = self.folder.resume_candidates()
        parts = self._build(fresh=not candidates)
        if self.rank != 0:
            return self._run(parts, candidates)
        if not candidates and self.cfg.overwrite:
            with self.folder.lock():  # refuses while another run holds the folder
                pass
            aside = self.folder.move_aside()
            if aside is not None:
                print(
                    f"the previous run in {self.out_dir} was moved to {aside} (`udalib clean` lists the runs kept "
                    "aside, with their sizes, and removes them)"
                )
        with self.folder.lock(), self.stop:
            return self._run(parts, candidates)

    def _build(self, *, fresh: bool) -> _Parts:
        cfg, t, device = self.cfg, self.cfg.train, self.device
        # one DataError listing every problem found, before anything is written (SynthCity is generated first)
        report = preflight(cfg)
        if self.rank == 0 and self.progress != "none":
            print(report)
        _seed_everything(t.seed)  # the same initial weights on every DDP rank
        domains = build_domains(cfg)
        model = build_segmenter(t, self.protocol.num_classes)
        if t.init_checkpoint and fresh:
            # initial weights may come from a multi-level stage (single-level AdaptSegNet starts from source-only)
            load_weights(model, t.init_checkpoint, drop_heads=True)
        model = model.to(device)
        if t.channels_last:
            model = model.to(memory_format=torch.channels_last)
        method = build_method(
            cfg.method,
            cfg.method_cfg,
            self.protocol.num_classes,
            feature_dim=model.feature_channels,
            total_iters=t.iters,
        ).to(device)
        if method.needs_pseudo_labels and not cfg.data.pseudo_label_dir:
            raise ValueError(
                f"method {cfg.method!r} trains on target pseudo-labels but DataConfig.pseudo_label_dir is not set: "
                "its target batches would carry the target's ground truth"
            )
        _seed_everything(t.seed + self.rank)  # ranks draw different augmentations (a resume restores its RNG)
        groups = [
            {"params": g["params"], "lr": t.lr * g["lr_mult"], "initial_lr": t.lr * g["lr_mult"]}
            for g in model.parameter_groups(t.head_lr_mult)
        ]
        opt = torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        amp_dtype = _autocast_dtype(t.amp, device)
        scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
        return _Parts(domains, model, method, opt, amp_dtype, scaler)

    def _run(self, parts: _Parts, candidates: list[Path]) -> TrainResult:
        cfg, t, device = self.cfg, self.cfg.train, self.device
        domains, model, method, opt, amp_dtype, scaler = parts
        optimizers = [opt, *method.aux_optimizers()]
        start = self._resume(candidates, model, opt, method, scaler) if candidates else 0
        if start >= t.iters:
            raise RunFolderError(
                f"{self.out_dir} holds a finished run ({start} of {t.iters} iterations): nothing to resume. "
                f"Evaluate it with `udalib evaluate --checkpoint {candidates[0]}`, or pass a larger --iters (iters) "
                "to train on"
            )
        if self.rank == 0:  # only a run that passed every check above describes itself in the folder
            write_json(self.out_dir / "config.json", cfg.to_dict())
            _trim_logs(self.out_dir, start)
        if not candidates:
            method.prepare(model, domains.labelled_eval_loader(), device)

        labelled = domains.labelled_stream(t.batch_source, seed=t.seed * 7 + self.rank, start_step=start * t.accum)
        target = (
            domains.target_stream(t.batch_target, seed=t.seed * 13 + self.rank, start_step=start * t.accum)
            if method.uses_target
            else None
        )
        params = [p for o in optimizers for g in o.param_groups for p in g["params"]]

        def backward(loss: Tensor) -> None:
            with torch.autocast(device.type, enabled=False):
                loss = loss / t.accum
                (scaler.scale(loss) if scaler is not None else loss).backward()

        books = _Books(self, TrainResult(self.out_dir, None, None), domains, start)
        model.train()
        # the compiled module shares the parameters; checkpoints and evaluation keep using `model` itself
        stepped = model if t.compile is None else torch.compile(model, backend=t.compile)
        for step in range(start, t.iters):
            _set_poly_lr(optimizers, poly_factor(step, t.poly_horizon, t.poly_power))
            for _ in range(t.accum):
                src = next(labelled).to(device, t.channels_last)
                tgt = next(target).to(device, t.channels_last) if target is not None else None
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    books.record(step, method.training_step(stepped, src, tgt, step, backward))
            _average_gradients(params, self.world)
            for o in optimizers:
                scaler.step(o) if scaler is not None else o.step()
            if scaler is not None:
                scaler.update()
            books.after_step(step + 1, model, opt, method, scaler)
            if self.stop.signum is not None and step + 1 < t.iters:
                books.close_outputs()
                raise self._interrupted(step + 1, model, opt, method, scaler)
        return books.close(model, method)

    def _interrupted(self, done: int, model, opt, method, scaler) -> RunInterrupted:
        """Keep the checkpoint of iteration `done` and say how to go on (written even where the cadence has just
        written it: a file of that name left by an earlier, corrupt attempt must not pass for it)."""
        path = self.save_checkpoint(done, model, opt, method, scaler)
        how = (
            "the cached stage continues from it the next time it is needed (run the same command or cell again)"
            if Path(self.cfg.out_dir).resolve().is_relative_to(cache_root().resolve())
            else f"continue the run with {setting('resume', 'auto')}"
        )
        name = signal.Signals(self.stop.signum).name
        return RunInterrupted(
            f"{name} stopped the run after iteration {done:,} of {self.cfg.train.iters:,}; kept {path}; {how}",
            signum=self.stop.signum,
            checkpoint=path,
        )

    def _load(self, state: dict, model, opt, method, scaler) -> int:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for o, s in zip(method.aux_optimizers(), state["aux_optimizers"]):
            o.load_state_dict(s)
        method.load_state_dict(state["method"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(_np_unpack(rng["numpy"]))
        random.setstate(_py_unpack(rng["python"]))
        if torch.cuda.is_available() and rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])
        return int(state["step"])

    def evaluate(self, model: nn.Module, domains) -> EvalResult:
        amp = _autocast_dtype(self.cfg.train.amp, self.device)
        return evaluate(
            model,
            domains.target_val_loader(rank=self.rank, world=self.world),
            self.protocol,
            device=self.device,
            amp_dtype=amp,
        )

    def metrics(self, result: TrainResult) -> dict:
        """The run's ``metrics.json``: its :class:`~udalib.record.Record`, plus the evaluations over training (and
        the peak GPU memory on CUDA), which the results record leaves out."""
        rec = Record(
            method=self.cfg.method,
            preset=self.cfg.preset,
            seed=self.cfg.train.seed,
            iters=self.cfg.train.iters,
            **result.final.to_json(),
            checkpoint="last",
            wall_s=round(result.wall_s, 1),
            device=self.device.type,
            threads=torch.get_num_threads(),  # CPU kernels (and so the last digits) depend on it
            data=data_identity(self.cfg),
            git=git_revision(),
            best_on_target_val={
                "step": result.best[0],
                "miou": result.best[1].main_miou,
                "note": "selected on the target val set (oracle model selection)",
            },
        ).to_dict()
        rec["evals"] = result.evals
        if self.device.type == "cuda":
            rec["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        return rec


class _Books:
    """The trainer's bookkeeping around the loop: losses pending a log line, TensorBoard, the progress bar, and
    what falls due after each iteration (:class:`Cadence`): a log line, a checkpoint (rank 0), an evaluation."""

    def __init__(self, trainer: Trainer, result: TrainResult, domains, start: int):
        t = trainer.cfg.train
        self.trainer, self.result, self.domains = trainer, result, domains
        self.cadence = Cadence(t.log_every, t.checkpoint_every, t.eval_every, t.iters)
        self.pending: list[tuple[int, dict[str, Tensor]]] = []  # (iteration, its logged losses) since the last log
        self.writer = self._tensorboard()
        self.bar = self._bar(start, t.iters)
        self.t0 = time.time()

    def record(self, step: int, losses: dict[str, Tensor]) -> None:
        self.pending.append((step, losses))

    def after_step(self, done: int, model: nn.Module, opt, method: Method, scaler) -> None:
        tr, result = self.trainer, self.result
        log, checkpoint, evaluate_now = self.cadence.due(done)
        if log or checkpoint or evaluate_now:
            self._check_finite()  # before anything is logged, saved or evaluated
        if log:
            result.history.append(self._log(done, opt.param_groups[0]["lr"]))
        if checkpoint and tr.rank == 0:
            tr.save_checkpoint(done, model, opt, method, scaler)
        if evaluate_now:
            res = tr.evaluate(model, self.domains)
            result.evals.append({"step": done, "miou": res.main_miou})
            if self.writer is not None:
                self.writer.add_scalar("val/miou", res.main_miou, done)
            if result.best is None or res.main_miou > result.best[1].main_miou:
                result.best = (done, res)
            result.final = res
            self._append("evals.jsonl", {"step": done, "miou": res.main_miou})  # kept even if the run dies later
            self._say(f"iter {done}: target-val mIoU {res.main_miou:.1f}")
        if self.bar is not None:
            self.bar.update(1)

    def close(self, model: nn.Module, method: Method) -> TrainResult:
        self.close_outputs()
        result, tr = self.result, self.trainer
        result.wall_s = time.time() - self.t0
        result.model, result.method = model, method
        if result.final is not None and tr.rank == 0:
            write_json(tr.out_dir / "metrics.json", tr.metrics(result))
        return result

    def close_outputs(self) -> None:
        """Close the progress bar and TensorBoard's writer (also of a run that stops early, before it says why)."""
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def _check_finite(self) -> None:
        """Stop the run at the first NaN or infinite loss since the last check (one host sync per check)."""
        values = [v for _, d in self.pending for v in d.values()]
        if not values or bool(torch.stack([torch.isfinite(v).all() for v in values]).all()):
            return
        step, name, value = next(
            (s, k, v) for s, d in self.pending for k, v in d.items() if not torch.isfinite(v).all()
        )
        kept = self.trainer.folder.checkpoints()
        raise NonFiniteLossError(
            f"iteration {step + 1}: the loss term {name!r} is {value.float().mean().item()}; the run stops here. "
            f"{'Its last checkpoint ' + kept[-1].name + ' (finite) is kept' if kept else 'No checkpoint was written'}"
            " and no result is recorded. Lower the learning rate, or check the data and the loss weights."
        )

    def _log(self, step: int, lr: float) -> dict:
        # One host sync per log interval, not per iteration.
        pending = [d for _, d in self.pending]
        self.pending = []
        names = sorted({k for d in pending for k in d})
        stacked = torch.stack([torch.stack([d[k].float() for d in pending if k in d]).mean() for k in names])
        values = dict(zip(names, stacked.tolist()))
        row = {"step": step, "lr": lr, **values}
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"train/{k}", v, step)
            self.writer.add_scalar("train/lr", lr, step)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)
        elif self.trainer.progress == "lines" and self.trainer.rank == 0:
            print(f"iter {step}: " + " ".join(f"{k}={v:.4g}" for k, v in values.items()), flush=True)
        self._append("log.jsonl", row)
        return row

    def _append(self, name: str, row: dict) -> None:
        if self.trainer.rank == 0:
            with open(self.trainer.out_dir / name, "a") as fh:
                fh.write(json.dumps(row) + "\n")

    def _tensorboard(self):
        if self.trainer.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency, but a trimmed environment should still train
            return None
        return SummaryWriter(str(self.trainer.out_dir / "tb"))

    def _bar(self, start: int, total: int):
        if self.trainer.progress != "bar" or self.trainer.rank != 0:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=start, desc=self.trainer.cfg.method, mininterval=2.0)

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)  # on its own line, not onto the bar's
        elif self.trainer.rank == 0 and self.trainer.progress != "none":
            print(text, flush=True)


def _trim_logs(folder: Path, start: int) -> None:
    """Keep the log rows of iterations up to `start` (those after it were lost with the process that wrote them;
    a fresh start keeps none), so that the logs describe the run that goes on."""
    for name in ("log.jsonl", "evals.jsonl"):
        path = folder / name
        if path.is_file():
            kept = "".join(f"{r}\n" for r in path.read_text().splitlines() if r and json.loads(r)["step"] <= start)
            atomic_write(path, lambda tmp, text=kept: tmp.write_text(text))


def _set_poly_lr(optimizers: list[torch.optim.Optimizer], factor: float) -> None:
    """Every group's LR = its ``initial_lr`` × the poly factor; gradients are cleared for the iteration."""
    for o in optimizers:
        for g in o.param_groups:
            g["lr"] = g["initial_lr"] * factor
        o.zero_grad(set_to_none=True)


def _out_of_space(err: BaseException, folder: Path) -> bool:
    """Whether a failed write ran out of disk space (ENOSPC, or torch's zip writer with almost no space left)."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    try:
        return "write failed" in str(err) and shutil.disk_usage(folder).free < 64 * 2**20
    except OSError:
        return False


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# RNG states travel through weights_only checkpoints as tensors and plain lists.
def _np_state() -> dict:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss}


def _np_unpack(s: dict):
    return ("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"])


def _py_state() -> dict:
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _py_unpack(s: dict):
    return (s["version"], tuple(int(v) for v in s["internal"].tolist()), s["gauss"])


def train(cfg: RunConfig, *, progress: str = "bar") -> TrainResult:
    """Train one run end to end (what the CLI and the chapters call)."""
    return Trainer(cfg, progress=progress).fit()
