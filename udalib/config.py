"""The configuration layer: what a run is made of, where it lives, and the device and cache it uses.

Every other module reads these dataclasses; this module imports nothing from udalib. What the ``quick`` and
``paper`` presets mean for each method is written in one table, ``udalib/presets.py``; a method's own
hyperparameters (with the paper's values) are its config dataclass in ``udalib/methods/<paper>.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a device is resolved, so that `udalib --help` starts without it
    import torch

#: Label value of pixels that carry no class (void, unlabelled, below a pseudo-label threshold).
IGNORE_INDEX = 255

CHECKPOINT_NAME = "checkpoint_{step:07d}.pt"
#: ``init_checkpoint="stage:<method>"`` / ``pseudo_label_dir="stage:<method>"``: the cached stage's output.
STAGE_PREFIX = "stage:"
#: The named parts of SynthCity's source→target shift (``udalib.data.synthcity``), in the order of
#: ``DataConfig.synthcity_shift``.
COMPILE_BACKENDS = ("inductor", "eager", "aot_eager")
SHIFT_KNOBS = ("appearance", "texture", "geometry", "priors", "layout")
#: The named training pipelines (``udalib.data.transforms.PIPELINES``) of source images (``DataConfig.source_aug``)
#: and of target-train images with labels (``DataConfig.labelled_aug``).
SOURCE_AUGS = ("none", "sdca_color", "fda")
LABELLED_AUGS = ("none", "scale_crop")


@dataclass(frozen=True)
class DataConfig:
    """Where the domains live and how images are sized. Sizes are (height, width)."""

    source: str = "synthcity"  # synthcity | gta5 | synthia (source domain, labelled)
    target: str = "synthcity"  # synthcity | cityscapes (target domain; val labels only for evaluation)
    source_root: str | None = None
    target_root: str | None = None
    protocol: str = "cityscapes19"  # cityscapes19 | synthia16
    # Which set carries the training labels: the source (every adaptation method), or target train (the oracle
    # with ground truth, self-training with `pseudo_label_dir`). Set by the method's preset row.
    labelled: str = "source"  # source | target
    source_size: tuple[int, int] = (64, 128)
    target_size: tuple[int, int] = (64, 128)
    eval_size: tuple[int, int] = (64, 128)  # network input at test time; labels stay at full resolution
    # labels resized (nearest) to this size for scoring; None: full resolution (the benchmark). UDAclustering's
    # released evaluation scores Cityscapes at (512, 1024)
    eval_label_size: tuple[int, int] | None = None
    normalization: str = "imagenet_rgb"  # imagenet_rgb (torchvision weights) | caffe_bgr (seeds' init) | vgg_bgr255
    synthcity_size: tuple[int, int] = (128, 256)  # generated resolution (quick) = full-resolution labels
    synthcity_counts: tuple[int, int, int] = (2000, 500, 200)  # source, target train, target val
    # strength of each shift knob (SHIFT_KNOBS order): 0 = off, 1 = the default pair, up to 2
    synthcity_shift: tuple[float, ...] = (1.0,) * len(SHIFT_KNOBS)
    num_workers: int = 0
    # pipeline of the source images (SOURCE_AUGS): none | sdca_color (SDCA stage 3: colour jitter, grayscale,
    # blur) | fda (target low frequencies in a window of half-width fda_beta * min(H, W))
    source_aug: str = "none"
    fda_beta: float = 0.01  # the fda pipeline's window (FDA's released default)
    source_sampling: str = "uniform"  # uniform | class_balanced (FADA/SDCA sampler)
    # target-train labels from pseudo-labels: the labelled set of a self-training stage, or the target batches of a
    # method that also trains on them (BAFFT's step 2)
    pseudo_label_dir: str | None = None
    # pipeline of labelled target-train images (LABELLED_AUGS): none | scale_crop (SDCA self-training: random scale
    # 0.5-1.5 of the full image, crop, flip)
    labelled_aug: str = "none"

    def __post_init__(self) -> None:
        _one_of("labelled", self.labelled, ("source", "target"))
        _one_of("source_sampling", self.source_sampling, ("uniform", "class_balanced"))
        _one_of("source_aug", self.source_aug, SOURCE_AUGS)
        _one_of("labelled_aug", self.labelled_aug, LABELLED_AUGS)
        # a pipeline of the set that does not carry the labels would be silently ignored
        if self.source_aug != "none" and self.labelled == "target":
            raise ValueError(f"source_aug={self.source_aug!r} needs labelled='source' (labelled_aug is target's)")
        if self.labelled_aug != "none" and self.labelled == "source":
            raise ValueError(f"labelled_aug={self.labelled_aug!r} needs labelled='target' (source_aug is source's)")
        sizes = ("source_size", "target_size", "eval_size", "synthcity_size")
        for name in sizes + (("eval_label_size",) if self.eval_label_size is not None else ()):
            size = getattr(self, name)
            if not (isinstance(size, tuple) and len(size) == 2 and all(_positive_int(v) for v in size)):
                raise ValueError(f"{name} must be (height, width) in positive integers, got {size!r}")
        if not (len(self.synthcity_counts) == 3 and all(_positive_int(v) for v in self.synthcity_counts)):
            raise ValueError(f"synthcity_counts must be 3 positive integers, got {self.synthcity_counts!r}")
        shift = self.synthcity_shift
        if not (
            isinstance(shift, tuple)
            and len(shift) == len(SHIFT_KNOBS)
            and all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 2 for v in shift)
        ):
            raise ValueError(
                f"synthcity_shift must be {len(SHIFT_KNOBS)} strengths in [0, 2] for {SHIFT_KNOBS}, got {shift!r}"
            )
        _check_int("num_workers", self.num_workers, minimum=0)
        if not (isinstance(self.fda_beta, int | float) and 0 < self.fda_beta < 0.5):
            raise ValueError(f"fda_beta must be in (0, 0.5), got {self.fda_beta!r}")
        if self.fda_beta != DataConfig.fda_beta and self.source_aug != "fda":
            raise ValueError(f"fda_beta is the fda pipeline's window, but source_aug is {self.source_aug!r}")


@dataclass(frozen=True)
class TrainConfig:
    """The segmenter, the optimiser and the schedule (AdaptSegNet ``train_gta2cityscapes_multi.py`` and
    ``model/deeplab_multi.py:optim_parameters``: SGD 0.9 / 5e-4, poly 0.9, heads ×10)."""

    backbone: str = "small"  # small | resnet101 | vgg16
    multi_level: bool = True
    # None (fresh init) | "imagenet" (resnet101, vgg16) | "procedural" (small: the shipped procedural backbone) |
    # a path to a checkpoint
    pretrained: str | None = None
    init_checkpoint: str | None = None  # a udalib checkpoint to start from, or "stage:<method>" (a cached stage)
    bn_mode: str = "affine_frozen"
    aspp_bug_compat: bool = False
    lr: float = 2.5e-4
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    iters: int = 150_000  # iterations trained (the seeds' NUM_STEPS_STOP, an early stop)
    poly_horizon: int = 250_000  # where the poly LR would reach zero (the seeds' NUM_STEPS), beyond `iters`
    batch_source: int = 1  # labelled images per micro-batch
    batch_target: int = 1  # unlabelled target images per micro-batch
    accum: int = 1  # gradient accumulation (the seeds' ITER_SIZE)
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | fp16 | off
    channels_last: bool = True
    # torch.compile backend of the training steps: None (eager), "inductor" (the compiler, for GPUs), "eager" or
    # "aot_eager" (graph capture without code generation: checks the path on a CPU)
    compile: str | None = None
    eval_every: int = 5000
    checkpoint_every: int = 5000
    log_every: int = 50
    seed: int = 1234
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in (
            "iters",
            "poly_horizon",
            "batch_source",
            "batch_target",
            "accum",
            "eval_every",
            "checkpoint_every",
            "log_every",
        ):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("seed", self.seed, minimum=0)
        if self.poly_horizon < self.iters:
            raise ValueError(
                f"poly_horizon ({self.poly_horizon}) must be at least iters ({self.iters}): the poly "
                "LR reaches zero at the horizon"
            )
        for name in ("lr", "head_lr_mult", "momentum", "weight_decay", "poly_power"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lr == 0:
            raise ValueError("lr must be positive, got 0")
        _one_of("amp", self.amp, ("auto", "bf16", "fp16", "off"))
        _check_pretrained(self.pretrained, self.backbone)
        if self.compile is not None:
            _one_of("compile", self.compile, COMPILE_BACKENDS)
        try:
            resolve_device(self.device)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}") from None


@dataclass(frozen=True)
class RunConfig:
    preset: str
    method: str
    data: DataConfig
    train: TrainConfig
    method_cfg: Any  # the method's frozen config dataclass (a plain dict when read back from a checkpoint)
    out_dir: str = "runs/default"
    resume: str | None = None  # a checkpoint file, or "auto" = the latest in out_dir
    overwrite: bool = False  # allow starting a fresh run in an out_dir that already holds one

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["method_cfg"] = (
            dataclasses.asdict(self.method_cfg) if dataclasses.is_dataclass(self.method_cfg) else self.method_cfg
        )
        return d

    def identity(self) -> dict:
        """What names a cached run: its settings and the content of the files it reads, never where they are.

        :meth:`to_dict` without where the run is written (``out_dir``, ``resume``, ``overwrite``), with every path
        it reads as :func:`portable_path` names it (inside the cache relative to it, elsewhere by content), and
        without the data and training fields left at their defaults, so that a field added to DataConfig or
        TrainConfig later (at a default that keeps the old behaviour) does not rename, and so retrain, every
        cached stage. A cache copied to another folder or machine keeps its names.
        """
        d = self.to_dict()
        for name in RUN_LOCATION_FIELDS:
            d.pop(name)
        for part, kind in (("data", DataConfig), ("train", TrainConfig)):
            defaults = field_defaults(kind)
            d[part] = {
                k: portable_path(v) if k in PATH_FIELDS[part] else v
                for k, v in d[part].items()
                if k not in defaults or defaults[k] != v
            }
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """The inverse of `to_dict` (the config a checkpoint stores); the method config stays a dict."""
        data = _from_dict(DataConfig, _named_pipelines(d["data"]))
        return cls(**{**d, "data": data, "train": _from_dict(TrainConfig, d["train"])})

    def describe(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=str)

    def checkpoint_path(self, step: int) -> Path:
        return Path(self.out_dir) / CHECKPOINT_NAME.format(step=step)

    @property
    def final_checkpoint(self) -> Path:
        """The checkpoint the run ends with: every later stage, evaluation and record reads this one."""
        return self.checkpoint_path(self.train.iters)


#: RunConfig fields that say where a run is written and how it starts, not what it is.
RUN_LOCATION_FIELDS = ("out_dir", "resume", "overwrite")
#: The fields of DataConfig and TrainConfig that may hold a path (to data, a checkpoint, pseudo-labels).
PATH_FIELDS = {
    "data": ("source_root", "target_root", "pseudo_label_dir"),
    "train": ("pretrained", "init_checkpoint"),
}


def portable_path(value: str | None) -> str | None:
    """A path field as a cache key names it, the same on every machine the cache is copied to.

    Inside the cache (:func:`cache_root`) a path is named relative to it (``"$UDABOOK_CACHE/synthcity-..."``):
    the cache's own folder names are keys of their content (a SynthCity set's generator version and spec, a
    stage's config). Elsewhere an existing file or folder is named by its content (:func:`content_digest`), and
    anything else (``None``, ``"imagenet"``, a ``stage:`` reference) stays as it is.

    Example: with ``UDABOOK_CACHE=/a/cache``, ``portable_path("/a/cache/synthcity-128x256-0123456789")`` is
    ``"$UDABOOK_CACHE/synthcity-128x256-0123456789"``, as it is with the cache moved to ``/b/cache``.
    """
    if value is None or value.startswith(STAGE_PREFIX):
        return value
    path, cache = Path(value).resolve(), cache_root().resolve()
    if path.is_relative_to(cache):  # whether or not it exists yet (a SynthCity set is generated on first use)
        return "$UDABOOK_CACHE/" + path.relative_to(cache).as_posix()
    if not path.exists():
        return value
    stat = path.stat()
    return f"content:{content_digest(path, stat.st_mtime_ns, stat.st_size)}"


@functools.lru_cache(maxsize=64)
def content_digest(path: Path, mtime_ns: int, size: int) -> str:
    """A short hash of a file's bytes, or of a folder's listing (every file's relative path and size): cheap enough
    for a dataset of tens of thousands of images, and it changes when a file is added, removed or resized. Cached
    in the process per (path, modification time, size)."""
    digest = hashlib.sha1()
    if path.is_file():
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    else:
        for folder, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                file = Path(folder) / name
                digest.update(f"{file.relative_to(path).as_posix()}\0{file.stat().st_size}\n".encode())
    return digest.hexdigest()[:10]


def field_defaults(kind: type) -> dict[str, Any]:
    """{field: default} of a config dataclass (every field of DataConfig and TrainConfig has one)."""
    return dataclasses.asdict(kind())


def _named_pipelines(data: dict) -> dict:
    """Data fields stored before the named pipelines, in their names: ``source_color_aug`` became
    ``source_aug="sdca_color"``, ``source_fda_beta`` (0: off) ``source_aug="fda"`` with ``fda_beta``, and
    ``labelled_scale_crop`` ``labelled_aug="scale_crop"``, so that older checkpoints still load."""
    data = dict(data)
    if data.pop("source_color_aug", False):
        data["source_aug"] = "sdca_color"
    if beta := data.pop("source_fda_beta", 0.0):
        data["source_aug"], data["fda_beta"] = "fda", beta
    if data.pop("labelled_scale_crop", False):
        data["labelled_aug"] = "scale_crop"
    return data


def _from_dict(kind: type, values: dict) -> Any:
    """A config dataclass from JSON values (lists back to tuples, where the field is a tuple)."""
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")


def _one_of(name: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(valid)}; got {value!r}")


#: The weights `TrainConfig.pretrained` names rather than points to, and the backbones they exist for.
NAMED_WEIGHTS = {"imagenet": ("resnet101", "vgg16"), "procedural": ("small",)}


def _check_pretrained(pretrained: Any, backbone: str) -> None:
    if pretrained is None:
        return
    if not isinstance(pretrained, str) or not pretrained:
        raise ValueError(
            f"pretrained must be None, {', '.join(map(repr, NAMED_WEIGHTS))} or a path, got {pretrained!r}"
        )
    if pretrained in NAMED_WEIGHTS and backbone not in NAMED_WEIGHTS[pretrained]:
        raise ValueError(
            f"pretrained={pretrained!r} exists for backbone {' or '.join(NAMED_WEIGHTS[pretrained])}, not {backbone!r}"
        )


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cache_root() -> Path:
    """The shared cache (SynthCity sets, cached stages): $UDABOOK_CACHE or ~/.cache/udabook."""
    return Path(os.environ.get("UDABOOK_CACHE", Path.home() / ".cache" / "udabook"))


def cache_key(obj: Any) -> str:
    """A short, stable hash of a JSON-able object: the name of a cached artefact made from it."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]
