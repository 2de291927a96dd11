"""What a chapter needs besides its lesson: the run set up from its parameters cell, cached stages, examples.

Every notebook starts the same way, so the scaffolding lives here and the chapters show only the method::

    ch = chapter.setup("advent", preset, dataset=dataset, data_root=data_root, ...)   # prints the summary
    before = ch.load_stage("source_only")          # the shared, cached source-only model
    result = ch.train()                            # this chapter's run (its stages first)
    ex = ch.examples(4)                            # target-val images, labels, RGB, predictions
    viz.plot_predictions(ex.rgb, ex.labels, {"before": ex.predict(before), "after": ex.predict(result.model)})
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from . import stages
from .analysis import PixelSample, collect_pixels, predict
from .config import RunConfig, resolve_device
from .data.domains import Domains, build_domains
from .data.labels import Protocol, get_protocol
from .data.transforms import denormalize
from .evaluate import EvalResult, evaluate
from .preset_choice import AUTO, resolve_run
from .train import TrainResult
from .user_error import UserError


def repository_root(start: Path | None = None) -> Path:
    """The checkout holding ``udalib/`` above `start` (default: the working directory), else `start` itself:
    a chapter's relative ``out_dir`` lands there wherever the notebook runs from."""
    start = start or Path.cwd()
    return next((p for p in (start, *start.parents) if (p / "udalib" / "__init__.py").is_file()), start)


@dataclass
class Examples:
    """A few target-val examples: network inputs (n, 3, h, w), full-resolution labels, RGB images for display."""

    images: Tensor
    labels: list[np.ndarray]
    rgb: list[np.ndarray]
    device: torch.device

    @property
    def label_size(self) -> tuple[int, int]:
        return tuple(self.labels[0].shape)

    def probabilities(self, model: nn.Module) -> Tensor:
        """Softmax (n, K, H, W) at the labels' resolution."""
        return predict(model, self.images, self.label_size, self.device)

    def predict(self, model: nn.Module) -> np.ndarray:
        """Predicted train ids (n, H, W) at the labels' resolution."""
        return self.probabilities(model).argmax(1).numpy()


@dataclass
class Chapter:
    cfg: RunConfig
    protocol: Protocol
    device: torch.device
    domains: Domains

    @property
    def classes(self) -> tuple[str, ...]:
        return self.protocol.classes

    def load_stage(self, method: str) -> nn.Module:
        """The cached final model of stage `method` for this chapter's preset, data and seed (trained once)."""
        return stages.load_stage(self.cfg, method)

    def has_stage(self, method: str) -> bool:
        """Whether the cache already holds stage `method` (so loading it trains nothing)."""
        return self.stage_config(method).final_checkpoint.exists()

    def stage_config(self, method: str) -> RunConfig:
        """The config of the cached stage `method` for this chapter's preset, data, backbone and seed."""
        return stages.stage_config(self.cfg, method)

    def stage_history(self, method: str) -> list[dict]:
        """The logged losses and learning rates of the cached stage `method` (trained first if the cache lacks it),
        as ``TrainResult.history`` holds them for a run trained here."""
        log = stages.stage_checkpoint(self.cfg, method).parent / "log.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()]

    def evaluate_stage(self, method: str) -> EvalResult:
        """Per-class IoU and mIoU of the cached stage `method` on target val, read as that stage reads it (its own
        test input size; its stage references resolved first, as the cache made them)."""
        stage = stages.resolve_stages(self.stage_config(method))
        loader = build_domains(stage).target_val_loader()
        return evaluate(self.load_stage(method), loader, self.protocol, device=self.device)

    def train(self, cfg: RunConfig | None = None) -> TrainResult:
        """Train this chapter's run (or `cfg`), its cached stages first; the model comes back in eval mode and
        ``result.final`` holds its target-val result (the trainer evaluates after the last iteration)."""
        result = stages.run(cfg or self.cfg, progress="lines")
        result.model.eval()
        return result

    def evaluate(
        self,
        model: nn.Module,
        ensemble: Iterable[tuple[nn.Module, float]] = (),
        label_size: tuple[int, int] | None = None,
    ) -> EvalResult:
        """Per-class IoU and mIoU of `model` on target val, at full label resolution (or on labels resized to
        `label_size`, as UDAclustering's released evaluation does). `ensemble`: other (model, weight) pairs whose
        upsampled logits are added, weighted (:func:`udalib.evaluate.evaluate`)."""
        domains = self.domains
        if label_size is not None:
            data = dataclasses.replace(self.cfg.data, eval_label_size=label_size)
            domains = build_domains(dataclasses.replace(self.cfg, data=data))
        return evaluate(model, domains.target_val_loader(), self.protocol, device=self.device, ensemble=ensemble)

    def examples(self, n: int = 4) -> Examples:
        """The first `n` target-val images: network inputs, full-resolution labels, RGB images for display."""
        items = [self.domains.target_val[i] for i in range(min(n, len(self.domains.target_val)))]
        images = torch.stack([it[0] for it in items])
        rgb = [denormalize(im, self.cfg.data.normalization) for im in images]
        return Examples(images, [it[1].numpy() for it in items], rgb, self.device)

    def pixels(self, model: nn.Module, n_images: int = 8) -> dict[str, PixelSample]:
        """Labelled pixels of `model`'s features on source and target val images, for t-SNE and class means."""
        seed = self.cfg.train.seed
        return {
            "source": collect_pixels(model, self.domains.labelled_eval_loader(), n_images, self.device, seed=seed),
            "target": collect_pixels(model, self.domains.target_val_loader(), n_images, self.device, seed=seed),
        }


def setup(
    method: str,
    preset: str = AUTO,
    *,
    out_dir: str | None = None,
    resume: str | None = None,
    confirm_long_run: bool = False,
    quiet: bool = False,
    **params,
) -> Chapter:
    """Resolve a chapter's run from its parameters cell (``None`` = the preset's value), print what was chosen,
    and build its data (SynthCity is generated into the cache the first time).

    ``preset="auto"`` picks the paper preset on a CUDA machine with the datasets configured and the quick one
    otherwise; the first line printed says which and why, and a run of hours needs `confirm_long_run`
    (:mod:`udalib.preset_choice`). A relative `out_dir` is taken from the repository root. Without `resume` the
    chapter's run starts afresh (re-running a chapter replaces its own run folder's checkpoints);
    ``resume="auto"`` continues it.

    A parameter out of range, a preset that cannot run here, an unconfirmed long run or data that is not there is
    refused as one :class:`~udalib.user_error.UserError`: the cell shows its message, naming the parameter in
    papermill's form, and no traceback.
    """
    if out_dir is not None and not Path(out_dir).is_absolute():
        out_dir = str(repository_root() / out_dir)
    say = (lambda line: None) if quiet else print
    try:
        cfg = resolve_run(
            method, preset, confirm_long_run=confirm_long_run, say=say, out_dir=out_dir, resume=resume, **params
        )
        cfg = dataclasses.replace(cfg, overwrite=resume is None)
        ch = Chapter(cfg, get_protocol(cfg.data.protocol), resolve_device(cfg.train.device), build_domains(cfg))
    except UserError:
        raise
    except (ValueError, OSError) as err:
        # everything here checks the parameters cell against this machine: a refusal to read, not a bug to debug
        raise UserError(str(err)) from err
    if not quiet:
        print(summary(ch))
    return ch


def summary(ch: Chapter) -> str:
    """What the run is: method, model, schedule, data, and the size of each set."""
    cfg, t, d, dom = ch.cfg, ch.cfg.train, ch.cfg.data, ch.domains
    return "\n".join(
        [
            f"{cfg.method} | preset {cfg.preset} | backbone {t.backbone} | multi-level {t.multi_level} | {ch.device}",
            f"iterations {t.iters} (poly horizon {t.poly_horizon}) | batch {t.batch_source} labelled + "
            f"{t.batch_target} target | lr {t.lr}",
            f"{d.source} {d.source_size} -> {d.target} {d.target_size} | test input {d.eval_size} | {d.protocol}",
            f"{len(dom.labelled)} labelled ({d.labelled}) images, {len(dom.target_train)} unlabelled target images, "
            f"{len(dom.target_val)} target val images | run folder {cfg.out_dir}",
            f"{cfg.method_cfg}",
        ]
    )
