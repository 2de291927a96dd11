"""Safe checkpoint loading, with the key mappings of the official releases.

Sources it understands:

* ``"seed"``: the seeds' DeepLab files. The init files ``DeepLab_resnet_pretrained_init-f81d91e8.pth``
  (AdaptSegNet, BAFFT) and ``DeepLab_resnet_pretrained_imagenet.pth`` (ADVENT) prefix every key
  with ``Scale.`` and carry a 21-class VOC head named ``layer5`` on 2048 channels, which the seeds
  drop (``train_gta2cityscapes_multi.py``); trained AdaptSegNet/ADVENT models and
  AdaptSegNet's VGG-16 use our key names, possibly behind ``module.`` (DataParallel).
* ``"torchvision"``: ImageNet ResNet (``conv1``, ``bn1``, ``layer*``, ``fc``) and VGG
  (``features.N``, ``classifier.N``) state dicts; the ImageNet classifiers are dropped and VGG's
  ``features`` are re-indexed around the removed pool4.
* ``"udalib"``: our own ``model.state_dict()``; everything must match, except that a multi-level model may
  initialise a single-level one when the caller asks (``drop_heads=True``): its auxiliary head is dropped.
* ``"auto"`` picks ``"torchvision"`` when the ImageNet classifier or VGG's pool4 gap is present,
  else ``"seed"`` (which also reads udalib checkpoints).

Files are read with ``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is
refused, and it, an empty, truncated or text file raise :class:`CheckpointError` (a ValueError) naming
the file. A missing or mis-shaped backbone tensor raises, because a silent partial load costs
about half the mIoU (AdaptSegNet issue #81); only the ASPP heads may stay at their init.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import Tensor

from udalib.models.deeplabv2 import DeepLabSegmenter
from udalib.models.vgg import FC6_FC7_PREFIXES, TORCHVISION_FEATURE_INDEX

SOURCES = ("auto", "seed", "torchvision", "udalib")

# "module." comes from (Distributed)DataParallel, "Scale." from the Caffe-converted DeepLab files.
_PREFIXES = ("module.", "Scale.")

_IMAGENET_WEIGHTS = {
    "resnet101": torchvision.models.ResNet101_Weights.IMAGENET1K_V1,
    "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
}


@dataclass
class LoadReport:
    """What :func:`load_checkpoint_into` did.

    loaded:  model keys copied from the checkpoint.
    skipped: checkpoint key -> why it was not used.
    missing: model keys left at their initial values (ASPP heads only; a backbone gap raises).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"checkpoint ({self.source}): loaded {len(self.loaded)} tensors, "
            f"skipped {len(self.skipped)}, missing {len(self.missing)}"
        ]
        by_reason: dict[str, list[str]] = {}
        for key, reason in self.skipped.items():
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            lines.append(f"  skipped {len(keys)} ({reason}), e.g. {keys[0]}")
        if self.missing:
            modules = sorted({_module_name(key) for key in self.missing})
            lines.append(f"  missing {len(self.missing)} in {', '.join(modules)}: left at init")
        return "\n".join(lines)


def load_checkpoint_into(
    model: DeepLabSegmenter,
    path_or_state: str | os.PathLike | Mapping[str, Tensor],
    *,
    source: str = "auto",
    verbose: bool = True,
    drop_heads: bool = False,
) -> LoadReport:
    """Copy a checkpoint's tensors into a udalib segmenter and report what happened.

    Args:
        model: a udalib segmenter.
        path_or_state: a file written by ``torch.save`` or a state dict. A file may also hold a
            dict with the state dict under ``"state_dict"`` or ``"model"``.
        source: one of ``SOURCES`` (see the module docstring).
        verbose: print the report.
        drop_heads: for ``"udalib"``, accept a checkpoint with ASPP heads the model lacks (a multi-level
            source-only model starting a single-level adaptation); every other mismatch still raises.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError (a ValueError): the file is empty, corrupt, not a checkpoint or needs unsafe unpickling.
        ValueError: the checkpoint is for another
            architecture or class count; a backbone tensor is missing or has another shape.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    state = {_strip_prefixes(key): value for key, value in _read_state(path_or_state).items()}
    checkpoint_arch = describe_architecture(state)
    if checkpoint_arch != model.arch:
        raise ValueError(f"checkpoint is a {checkpoint_arch}, model is {model.arch}")
    if source == "auto":
        source = "torchvision" if _looks_like_torchvision(state) else "seed"

    report = LoadReport(source=source)
    if source == "torchvision":
        state = _map_torchvision(state, report)
    model_state = model.state_dict()
    heads = tuple(f"{name}." for name in model.head_names)
    # ImageNet VGG has no fc6/fc7 convs: they keep their random init, as in the seeds.
    new_layers = FC6_FC7_PREFIXES if source == "torchvision" and model.arch == "vgg16" else ()
    backbone = {k: v for k, v in state.items() if not k.startswith(heads)}
    _match_backbone(backbone, model_state, heads, new_layers, report)
    for name in model.head_names:
        _match_head(name, state, model_state, model.num_classes, report)
    dropped = {k for k, why in report.skipped.items() if why.startswith(_NO_HEAD)} if drop_heads else set()
    if source == "udalib" and (set(report.skipped) - dropped or report.missing):
        raise ValueError(f"a udalib checkpoint must match the model exactly:\n{report}")

    model.load_state_dict({key: state[key] for key in report.loaded}, strict=False)
    if verbose:
        print(report)
    return report


def describe_architecture(state: Mapping[str, Tensor]) -> str:
    """Name the network a state dict is for: ``resnet<depth>``, ``vgg<depth>`` or ``small``."""
    if any(key.startswith("stem.") for key in state):
        return "small"
    if "conv1.weight" in state and "layer1.0.conv1.weight" in state:
        convs_per_block = 3 if "layer1.0.conv3.weight" in state else 2
        blocks = {m.group(1, 2) for k in state if (m := re.match(r"layer([1-4])\.(\d+)\.", k))}
        return f"resnet{convs_per_block * len(blocks) + 2}"
    if any(key.startswith("features.") for key in state):
        # Count VGG's own convs (fc6/fc7, with 1024 outputs, are DeepLab's); + 3 ImageNet FC layers.
        convs = [
            v for k, v in state.items()
            if k.startswith("features.") and k.endswith(".weight") and v.ndim == 4 and v.shape[0] <= 512
        ]  # fmt: skip
        return f"vgg{len(convs) + 3}"
    raise ValueError(f"cannot tell which network this checkpoint is for; keys: {list(state)[:5]}")


def imagenet_checkpoint_path(arch: str) -> Path:
    """Where torch.hub caches torchvision's ImageNet weights for ``arch``; raises if absent.

    udalib never downloads: this only looks in ``torch.hub.get_dir()``.
    """
    if arch not in _IMAGENET_WEIGHTS:
        raise ValueError(f"no ImageNet weights for {arch!r}; they exist for {sorted(_IMAGENET_WEIGHTS)}")
    url = _IMAGENET_WEIGHTS[arch].url
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not path.is_file():
        raise RuntimeError(
            f"ImageNet weights for {arch} are not in the torch hub cache: {path} is missing. "
            f"udalib does not download; fetch {url} elsewhere and put it at that path "
            f"(torch.hub.get_dir()/checkpoints, set by $TORCH_HOME)."
        )
    return path


#: Weights the repository ships, by architecture: the small backbone pretrained on procedural images
#: (``udalib pretrain``, :mod:`udalib.pretrain`), each beside a recipe JSON holding its SHA-256.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_PROCEDURAL_WEIGHTS = {"small": "small_procedural.pt"}


def procedural_checkpoint_path(arch: str) -> Path:
    """The repository's procedurally pretrained backbone for ``arch``, its checksum verified (:func:`verified_weights`).

    The ImageNet stand-in of the quick backbone: only its stem and layer1..layer4, no heads.
    """
    if arch not in _PROCEDURAL_WEIGHTS:
        raise ValueError(f"no procedural weights for {arch!r}; they exist for {sorted(_PROCEDURAL_WEIGHTS)}")
    return verified_weights(WEIGHTS_DIR / _PROCEDURAL_WEIGHTS[arch])


def recipe_path(weights: str | os.PathLike) -> Path:
    """The JSON beside a weights file: how it was made and its SHA-256 (``small_procedural.pt`` -> ``.json``)."""
    return Path(weights).with_suffix(".json")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_weights(path: str | os.PathLike) -> Path:
    """`path`, once its SHA-256 equals the ``sha256`` of its recipe JSON (:func:`recipe_path`).

    Raises FileNotFoundError naming the weights or the recipe when one is missing, and CheckpointError naming the
    file when the checksum differs (a damaged or replaced file: its provenance is unknown).
    """
    path = Path(path)
    recipe = recipe_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    if not recipe.is_file():
        raise FileNotFoundError(f"{path} has no recipe beside it: {recipe} (with its sha256) is missing")
    try:
        expected = json.loads(recipe.read_text())["sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{recipe} is not a weights recipe with a sha256 ({type(err).__name__}: {err})") from None
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(
            f"checksum mismatch for {path}: its SHA-256 is {actual}, its recipe {recipe.name} says {expected}; the "
            "file is damaged or was replaced (for a Git LFS pointer: `git lfs pull`); rebuild it with "
            "`udalib pretrain` and the recipe's settings"
        )
    return path


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: empty, truncated, not a checkpoint, or one that needs unsafe
    unpickling. The message names the file and says which."""


#: A Git LFS pointer: the repository's placeholder for a large file that was never fetched.
_LFS_POINTER = b"version https://git-lfs"


def read_checkpoint(path: str | os.PathLike, *, require: Collection[str] = ()) -> dict:
    """``torch.load`` of a checkpoint file with ``weights_only=True`` (tensors and plain containers only), on CPU.

    require: keys the checkpoint must hold (a dict); CheckpointError names the missing ones.

    Raises FileNotFoundError for a missing file, and CheckpointError (a ValueError) naming the file when it is
    empty, truncated or otherwise corrupt, a text file, not a checkpoint, or one that needs unsafe unpickling
    (which is refused: unpickling arbitrary objects can run code).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted save or copy; not a checkpoint")
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(_LFS_POINTER):
        raise CheckpointError(f"checkpoint {path} is a Git LFS pointer, not the file: fetch it with `git lfs pull`")
    try:
        with warnings.catch_warnings():  # torch's notice about a plain pickle's protocol: the error below says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(_refusal(path, size, head, err)) from None
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, ... on a damaged file
        raise CheckpointError(_corrupt(path, size, head, err)) from None
    if require:
        absent = [key for key in require if not isinstance(state, Mapping) or key not in state]
        if absent:
            what = f"a dict without {', '.join(absent)}" if isinstance(state, Mapping) else f"a {type(state).__name__}"
            raise CheckpointError(f"{path} is not a checkpoint written by udalib's trainer: it holds {what}")
    return state


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def _refusal(path: Path, size: int, head: bytes, err: pickle.UnpicklingError) -> str:
    """One line for a file ``weights_only=True`` refused, without torch's advice to load it unsafely."""
    message = str(err)
    if _looks_like_text(head) or "Unsupported" not in message:  # a damaged or foreign file, not a refusal
        return _corrupt(path, size, head, err)
    found = re.search(r"GLOBAL (\S+) was not an allowed global", message)
    what = f"holds a Python object ({found.group(1)}) besides tensors" if found else "is a pickle of more than tensors"
    return (
        f"refusing to load {path}: it {what} and plain containers, and unpickling it could run arbitrary code; "
        "it is not a udalib checkpoint. If you made it, re-save only the state_dict "
        "(torch.save(model.state_dict(), path))."
    )


def _corrupt(path: Path, size: int, head: bytes, err: Exception) -> str:
    """One line for a file torch could not read: truncated, damaged or not a checkpoint at all."""
    if _looks_like_text(head):
        return f"checkpoint {path} is a text file, not a checkpoint (it starts {head[:40].decode()!r})"
    reason = str(err).split(". ")[0].strip() if str(err) else type(err).__name__
    if "weights_only" in reason or len(reason) > 160 or isinstance(err, KeyError):
        reason = type(err).__name__
    return (
        f"checkpoint {path} is corrupt or not a udalib checkpoint ({size:,} bytes; torch.load: {reason}): "
        "a truncated download or an interrupted save; copy it again, or train it again"
    )


def _read_state(path_or_state: str | os.PathLike | Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    obj = path_or_state if isinstance(path_or_state, Mapping) else read_checkpoint(path_or_state)
    if not isinstance(obj, Mapping):
        raise ValueError(f"not a state dict: the checkpoint holds a {type(obj).__name__}")
    for wrapper in ("state_dict", "model"):
        if isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    not_tensors = [key for key, value in obj.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise ValueError(f"not a state dict: entries {not_tensors[:5]} are not tensors")
    return obj


def _module_name(key: str) -> str:
    """``layer6.conv2d_list.0.bias`` -> ``layer6``; ``features.29.weight`` -> ``features.29``."""
    parts = key.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]


def _strip_prefixes(key: str) -> str:
    while key.startswith(_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def _looks_like_torchvision(state: Mapping[str, Tensor]) -> bool:
    # ImageNet ResNet keeps its `fc`; torchvision VGG has a conv at 24 because pool4 sits at 23.
    return "fc.weight" in state or "features.24.weight" in state


def _map_torchvision(state: Mapping[str, Tensor], report: LoadReport) -> dict[str, Tensor]:
    mapped = {}
    for key, value in state.items():
        if key.startswith(("fc.", "classifier.")):
            report.skipped[key] = "torchvision's ImageNet classifier"
            continue
        if match := re.fullmatch(r"features\.(\d+)\.(.+)", key):
            index = TORCHVISION_FEATURE_INDEX.get(int(match.group(1)))
            if index is None:
                report.skipped[key] = "not a layer of torchvision's VGG-16 features"
                continue
            key = f"features.{index}.{match.group(2)}"
        mapped[key] = value
    return mapped


def _match_backbone(
    backbone: Mapping[str, Tensor],
    model_state: Mapping[str, Tensor],
    heads: tuple[str, ...],
    new_layers: tuple[str, ...],
    report: LoadReport,
) -> None:
    mismatched = []
    for key, value in backbone.items():
        if key not in model_state:
            report.skipped[key] = "not in the model"
        elif value.shape != model_state[key].shape:
            shapes = f"checkpoint {tuple(value.shape)}, model {tuple(model_state[key].shape)}"
            mismatched.append(f"{key}: {shapes}")
        else:
            report.loaded.append(key)
    if mismatched:
        raise ValueError(f"{len(mismatched)} backbone tensor(s) differ in shape: {mismatched[:5]}")
    # BN's num_batches_tracked is a counter that pre-1.0 files (the seeds') do not have.
    absent = [
        key for key in model_state
        if not key.startswith(heads) and key not in backbone and not key.endswith("num_batches_tracked")
    ]  # fmt: skip
    report.missing.extend(key for key in absent if key.startswith(new_layers))
    absent = [key for key in absent if not key.startswith(new_layers)]
    if absent:
        raise ValueError(
            f"checkpoint lacks {len(absent)} backbone tensor(s), e.g. {absent[:5]}; refusing a partial "
            "load (it silently costs about half the mIoU, AdaptSegNet issue #81)"
        )


_NO_HEAD = "the model has no"


def _match_head(
    name: str,
    state: Mapping[str, Tensor],
    model_state: Mapping[str, Tensor],
    num_classes: int,
    report: LoadReport,
) -> None:
    """Load one ASPP head, skip it when it is another network's head, refuse another class count."""
    prefix = f"{name}."
    saved = {k: v for k, v in state.items() if k.startswith(prefix)}
    wanted = [k for k in model_state if k.startswith(prefix)]
    if not wanted:
        for key in saved:
            report.skipped[key] = f"{_NO_HEAD} {name} (single-level)"
        return
    weight_key = f"{name}.conv2d_list.0.weight"
    if weight_key in saved:
        saved_weight, model_weight = saved[weight_key], model_state[weight_key]
        if saved_weight.shape[1] != model_weight.shape[1]:
            # The seeds' init files carry a 21-class VOC head on 2048 channels under `layer5`,
            # which is the 1024-channel aux head here; the seeds drop it as well.
            reason = (
                f"a {saved_weight.shape[0]}-class head on {saved_weight.shape[1]} channels from "
                f"pre-training; the model's {name} reads {model_weight.shape[1]}"
            )
            report.skipped.update(dict.fromkeys(saved, reason))
            report.missing.extend(wanted)
            return
        if saved_weight.shape[0] != num_classes:
            raise ValueError(f"checkpoint head {name} has {saved_weight.shape[0]} classes, model has {num_classes}")
    for key in saved:
        if key not in model_state:
            report.skipped[key] = "not in the model"
        elif saved[key].shape != model_state[key].shape:
            raise ValueError(f"{key}: checkpoint {tuple(saved[key].shape)}, model {tuple(model_state[key].shape)}")
        else:
            report.loaded.append(key)
    report.missing.extend(key for key in wanted if key not in saved)


__all__ = [
    "CheckpointError",
    "LoadReport",
    "SOURCES",
    "describe_architecture",
    "imagenet_checkpoint_path",
    "load_checkpoint_into",
    "procedural_checkpoint_path",
    "recipe_path",
    "sha256_file",
    "verified_weights",
]
