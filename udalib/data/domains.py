"""From a RunConfig to the run's data: the labelled stream, the unlabelled target stream and target val.

SynthCity is read through the same GTA5 and Cityscapes loaders as the real data (it is written in their layouts),
so every quick run exercises the real loaders.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from ..config import RunConfig, cache_key, cache_root
from . import synthcity
from .base import ImageFiles
from .cityscapes import Cityscapes
from .gta5 import GTA5
from .labels import get_protocol
from .sampling import ClassBalancedSampler, class_presence
from .streams import Batch, ResumableDraws, infinite_loader
from .synthia import SYNTHIA
from .transforms import eval_transform, pipeline_transform, train_transform


def ensure_synthcity(cfg: RunConfig) -> Path | None:
    """The run's SynthCity set (None for a run on other data): generated into the shared cache the first time,
    never anywhere else.

    A folder that already holds a complete set (its ``synthcity.json`` is written last) is read as it is, even at
    another size or count than the preset's: ``data_root`` may point at a set made with ``udalib data synthcity``.
    A `data_root` without a set is an error (a typo must not fill a folder with images).
    """
    d = cfg.data
    if "synthcity" not in (d.source, d.target):
        return None
    root = Path(d.source_root)
    if (root / synthcity.META_FILE).is_file():
        return root
    if root != synthcity.cache_dir(d):
        raise FileNotFoundError(
            f"data_root {root} holds no SynthCity set ({synthcity.META_FILE} missing); make one with "
            f"`udalib data synthcity --out {root}`, or leave data_root unset to use the shared cache"
        )
    return synthcity.ensure(root, synthcity.spec_for(d))


def target_label_size(cfg: RunConfig) -> tuple[int, int]:
    """(H, W) of the target's full-resolution labels, where evaluation and pseudo-labels live: for Cityscapes the
    size of its first val label (1024×2048 in the official set; a set written in its layout at another size, such
    as SynthCity's, is read as it is), the generated resolution for SynthCity (read from the set itself)."""
    d = cfg.data
    if d.target != "synthcity":
        first = next(
            iter(sorted((Path(d.target_root or ".") / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))), None
        )
        if first is None:
            return (1024, 2048)
        with Image.open(first) as im:
            return (im.height, im.width)
    meta = Path(d.target_root) / synthcity.META_FILE
    if meta.is_file():
        m = json.loads(meta.read_text())
        return (int(m["height"]), int(m["width"]))
    return tuple(d.synthcity_size)


@dataclass
class Domains:
    cfg: RunConfig
    labelled: Dataset  # source train, or target train (``DataConfig.labelled == "target"``: oracle, self-training)
    target_train: Dataset | None
    target_val: Dataset
    labelled_eval: Dataset  # the labelled set without augmentation, for one-off passes (SDCA's estimator)

    def _stream(self, ds: Dataset, batch: int, seed: int, start_step: int, balanced: bool) -> Iterator[Batch]:
        sampler = None
        if balanced:
            base = ClassBalancedSampler(self._presence(ds), num_samples=len(ds), seed=seed)
            sampler = ResumableDraws(base, start_step * batch)
        return infinite_loader(
            ds,
            batch,
            seed=seed,
            start_step=start_step,
            num_workers=self.cfg.data.num_workers,
            sampler=sampler,
            pin_memory=torch.cuda.is_available(),
        )

    def _presence(self, ds: Dataset) -> np.ndarray:
        """Which classes each labelled image contains, scanned once and cached beside the other caches."""
        k = get_protocol(self.cfg.data.protocol).num_classes
        path = cache_root() / "presence" / f"{cache_key([str(getattr(ds, 'root', '')), len(ds), k])}.npy"
        if path.exists():
            return np.load(path)
        presence = class_presence(ds, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, presence)
        return presence

    def labelled_stream(self, batch: int, *, seed: int, start_step: int) -> Iterator[Batch]:
        balanced = self.cfg.data.source_sampling == "class_balanced"
        return self._stream(self.labelled, batch, seed, start_step, balanced)

    def target_stream(self, batch: int, *, seed: int, start_step: int) -> Iterator[Batch]:
        if self.target_train is None:
            raise ValueError(f"method {self.cfg.method!r} asked for target batches but the run has no target set")
        return self._stream(self.target_train, batch, seed, start_step, False)

    def labelled_eval_loader(self, batch: int = 4) -> DataLoader:
        return DataLoader(self.labelled_eval, batch_size=batch, shuffle=False, num_workers=self.cfg.data.num_workers)

    def pseudo_label_loader(self, batch: int = 4) -> DataLoader:
        """Target train at the network's input size, in order, for pseudo-labelling (labels unused)."""
        d = self.cfg.data
        target_root = Path(d.target_root) / "target" if d.target == "synthcity" else Path(d.target_root)
        ds = Cityscapes(
            target_root,
            "train",
            eval_transform(size=d.target_size, normalization=d.normalization),
            protocol=get_protocol(d.protocol),
        )
        return DataLoader(ds, batch_size=batch, shuffle=False, num_workers=d.num_workers)

    def target_val_loader(self, *, rank: int = 0, world: int = 1, batch: int = 4) -> DataLoader:
        ds = self.target_val if world == 1 else Subset(self.target_val, range(rank, len(self.target_val), world))
        return DataLoader(ds, batch_size=batch, shuffle=False, num_workers=self.cfg.data.num_workers)


def build_domains(cfg: RunConfig) -> Domains:
    d = cfg.data
    protocol = get_protocol(d.protocol)
    ensure_synthcity(cfg)
    norm = d.normalization
    tgt_tf = train_transform(size=d.target_size, normalization=norm)
    val_tf = eval_transform(size=d.eval_size, normalization=norm, label_size=d.eval_label_size)
    target_root = Path(d.target_root) / "target" if d.target == "synthcity" else Path(d.target_root)
    # with pseudo_label_dir set, target-train labels are the pseudo-labels (self-training, BAFFT's step 2)
    target_train = Cityscapes(target_root, "train", tgt_tf, protocol=protocol, pseudo_label_dir=d.pseudo_label_dir)
    target_images = ImageFiles([s.image for s in target_train.samples])  # FDA's spectra, decoded on access
    src_tf = pipeline_transform(
        d.source_aug, size=d.source_size, normalization=norm, fda_images=target_images, fda_beta=d.fda_beta
    )
    src_plain = train_transform(size=d.source_size, normalization=norm)

    target_val = Cityscapes(target_root, "val", val_tf, protocol=protocol)

    if d.labelled not in ("source", "target"):
        raise ValueError(f"DataConfig.labelled must be 'source' or 'target', got {d.labelled!r}")
    if d.labelled == "target":  # the oracle (target GT) or self-training (target pseudo-labels)
        lab_tf = pipeline_transform(d.labelled_aug, size=d.target_size, normalization=norm)
        labelled = Cityscapes(target_root, "train", lab_tf, protocol=protocol, pseudo_label_dir=d.pseudo_label_dir)
        plain = Cityscapes(target_root, "train", tgt_tf, protocol=protocol, pseudo_label_dir=d.pseudo_label_dir)
    elif d.source in ("synthcity", "gta5"):
        root = Path(d.source_root) / "source" if d.source == "synthcity" else Path(d.source_root)
        labelled = GTA5(root, src_tf, protocol=protocol)
        plain = GTA5(root, src_plain, protocol=protocol)
    elif d.source == "synthia":
        labelled = SYNTHIA(d.source_root, src_tf, protocol=protocol)
        plain = SYNTHIA(d.source_root, src_plain, protocol=protocol)
    else:
        raise ValueError(f"unknown source dataset {d.source!r}; expected synthcity, gta5 or synthia")
    return Domains(cfg, labelled, target_train, target_val, plain)


def domain_samples(cfg: RunConfig, n: int = 4, split: str = "val") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A few raw (image, label) pairs of each domain for figures: returns (source items, target items)."""
    dom = build_domains(cfg)
    pick = lambda ds: [ds[i] for i in range(min(n, len(ds)))]  # noqa: E731
    return pick(dom.labelled_eval), pick(dom.target_val if split == "val" else dom.target_train)
