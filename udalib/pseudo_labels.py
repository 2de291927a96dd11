"""Confidence-thresholded pseudo-labels: on the fly (SDCA stage 3) and offline (SDCA stage 4, SSL).

Released code: SDCA ``train_sdca.py`` (on the fly), ``pseudo_label.py`` (offline); the
book's self-training chapter explains them.

* On the fly: ``threshold_labels(logits, delta)`` = argmax of softmax(logits), 255 where the max
  probability is below delta (0.9). It thresholds **probabilities**: before SDCA commit c6e2a34
  ("fix softmax bug") the raw logits were compared with delta.
* Offline, class-wise: pass 1 estimates thr_c = median of the max-probability of the pixels predicted
  as c (the element at index round(0.5 * n_c) of the sorted values, numpy rounding), 0 if c is never
  predicted, capped at 0.9; pass 2 labels every image with those thresholds and writes trainId PNGs.
  The official code held every probability of the train set in RAM (~25 GB, grown with np.append);
  here pass 1 keeps one K x bins histogram (``ClassThresholds``), so memory does not grow with the
  number of images.

Two orders of softmax and upsampling (``order``), chosen by the method whose model makes the labels:

* ``"upsample_then_softmax"`` (SDCA's ``pseudo_label.py``): the logits are upsampled bilinearly, then the
  softmax is taken at the output size;
* ``"softmax_then_upsample"`` (SIM's ``SSL.py``, BAFFT's ``Generate_Pseudo_Label.py``): the softmax of the
  feature-resolution logits is upsampled bilinearly (align_corners=True). Between two feature pixels this
  interpolates probabilities instead of logits, so the maxima, the class thresholds and some labels differ
  (``tests/test_pseudo_labels.py`` works one case by hand). The released script thresholds and writes at the
  network input size (512×1024), which the step-2 loader resizes; here both passes follow the same order, pass 2
  at ``label_size``.

Files: ``<out_dir>/<city>/<stem>_pseudo_trainIds.png``, single-channel uint8 ("L") PNGs holding trainIds
and 255 for ignored pixels, plus ``<out_dir>/thresholds.json``. Use ``pseudo_label_path`` to find them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from udalib.inference import predict_logits, upsample

from .config import IGNORE_INDEX
from .files import atomic_write, move_aside, write_json

PSEUDO_SUFFIX = "_pseudo_trainIds.png"
"""File-name ending of a pseudo-label PNG; it replaces the image's ``_leftImg8bit.png``."""
IMAGE_SUFFIX = "_leftImg8bit.png"
"""Cityscapes image file-name ending, stripped to build the pseudo-label name."""
THRESHOLDS_FILE = "thresholds.json"
UPSAMPLE_THEN_SOFTMAX = "upsample_then_softmax"
SOFTMAX_THEN_UPSAMPLE = "softmax_then_upsample"
ORDERS = (UPSAMPLE_THEN_SOFTMAX, SOFTMAX_THEN_UPSAMPLE)
"""The two orders of softmax and upsampling (module docstring)."""


# ----------------------------------------------------------------------------------------------------
# Thresholding
# ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def threshold_labels(logits: Tensor, delta: float = 0.9, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """On-the-fly pseudo-labels: argmax of softmax(logits), ``ignore_index`` where max prob < delta.

    Args:
        logits: (B, K, h, w) raw scores (SDCA uses the target logits at feature resolution).
        delta: constant confidence threshold on the softmax probability (SOLVER.DELTA = 0.9).

    Returns:
        (B, h, w) int64 labels; no gradient.
    """
    conf, pred = torch.softmax(logits.detach().float(), dim=1).max(dim=1)  # (B, h, w) each
    return torch.where(conf < delta, torch.full_like(pred, ignore_index), pred)


@torch.no_grad()
def apply_thresholds(probs: Tensor, thresholds: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Class-wise thresholding: argmax, set to ``ignore_index`` where max prob < thresholds[argmax].

    Args:
        probs: (B, K, H, W) class probabilities.
        thresholds: (K,) per-class thresholds.

    Returns:
        (B, H, W) int64 labels.
    """
    conf, pred = probs.detach().max(dim=1)  # (B, H, W) each
    thr = thresholds.to(device=conf.device, dtype=conf.dtype)[pred]  # (B, H, W)
    return torch.where(conf < thr, torch.full_like(pred, ignore_index), pred)


class ClassThresholds:
    """Streaming per-class histogram of the max probability of pixels predicted as each class.

    ``hist[c, b]`` counts pixels with argmax c and max probability in bin b = floor(p * bins), i.e.
    [b / bins, (b + 1) / bins) (p = 1 goes to the last bin). Memory is K x bins int64 counts
    (152 KB for K = 19, bins = 1000), independent of the number of images.

    ``thresholds()`` returns, per class, the **lower edge** of the bin that holds the element of index
    round(0.5 * n_c) of the sorted values (the shipped median rule), so it is below the exact median by
    less than one bin width (1 / bins). Lower rather than upper edge or centre: the exact rule keeps every
    pixel with p >= median, the median pixel included; the lower edge keeps them too (plus those of the
    same bin below the median), whereas an upper edge would drop a class whose pixels all share one
    confidence value.
    """

    def __init__(self, num_classes: int, bins: int = 1000) -> None:
        if bins < 1 or num_classes < 1:
            raise ValueError(f"num_classes and bins must be positive, got {num_classes}, {bins}")
        self.num_classes = int(num_classes)
        self.bins = int(bins)
        self.hist = torch.zeros(self.num_classes, self.bins, dtype=torch.int64)  # (K, bins), on CPU

    @property
    def counts(self) -> Tensor:
        """(K,) number of pixels predicted as each class so far."""
        return self.hist.sum(dim=1)

    @torch.no_grad()
    def update(self, probs: Tensor) -> None:
        """Add a batch of probability maps (B, K, H, W) to the histograms."""
        if probs.dim() != 4 or probs.shape[1] != self.num_classes:
            raise ValueError(f"probs must be (B, {self.num_classes}, H, W), got {tuple(probs.shape)}")
        conf, pred = probs.detach().max(dim=1)  # (B, H, W) each
        # float64 product is exact for float32 conf, so bin/bins <= conf holds exactly (lower-edge rule).
        bin_idx = torch.floor(conf.double() * self.bins).long().clamp_(0, self.bins - 1)  # (B, H, W)
        flat = (pred * self.bins + bin_idx).reshape(-1)  # (B*H*W,) index into the flattened (K, bins)
        counts = torch.bincount(flat, minlength=self.num_classes * self.bins)
        self.hist += counts.view(self.num_classes, self.bins).cpu()

    def thresholds(self, cap: float = 0.9) -> Tensor:
        """(K,) float32 thresholds: min(median_c, cap), 0 for a class never predicted.

        median_c is the lower edge of the bin holding the sorted element of index round(0.5 * n_c)
        (round half to even, as numpy), within one bin width below the exact value.
        """
        n = self.counts  # (K,)
        rank = torch.round(0.5 * n.double()).long()  # (K,) 0-based index of the "median" element
        cum = self.hist.cumsum(dim=1)  # (K, bins)
        # first bin whose cumulative count exceeds rank, i.e. cum[b] >= rank + 1
        bin_idx = torch.searchsorted(cum, (rank + 1)[:, None]).squeeze(1).clamp_(max=self.bins - 1)  # (K,)
        median = bin_idx.double() / self.bins
        median = torch.where(n > 0, median, torch.zeros_like(median))
        return median.clamp(max=cap).float()

    def state_dict(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "bins": self.bins, "hist": self.hist.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["hist"].shape != self.hist.shape:
            raise ValueError(f"histogram shape {tuple(state['hist'].shape)} != {tuple(self.hist.shape)}")
        self.hist = state["hist"].clone().to(torch.int64)


# ----------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------


def pseudo_label_relpath(image_name: str) -> str:
    """Relative pseudo-label path of a relative image path (POSIX separators).

    "aachen/aachen_000000_000019_leftImg8bit.png" -> "aachen/aachen_000000_000019_pseudo_trainIds.png"
    (a name without "_leftImg8bit" just loses its extension).
    """
    rel = PurePosixPath(image_name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.name:
        raise ValueError(f"image name must be a relative path inside the dataset, got {image_name!r}")
    stem = rel.name[: -len(IMAGE_SUFFIX)] if rel.name.endswith(IMAGE_SUFFIX) else rel.stem
    return str(rel.with_name(stem + PSEUDO_SUFFIX))


def pseudo_label_path(out_dir: str | os.PathLike[str], image_name: str) -> Path:
    """``out_dir / pseudo_label_relpath(image_name)``."""
    return Path(out_dir) / pseudo_label_relpath(image_name)


def save_label_png(labels: np.ndarray, path: Path) -> None:
    """Write (H, W) integer labels (trainIds, 255 = ignore) as a single-channel uint8 "L" PNG, atomically."""
    if labels.ndim != 2 or labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
        raise ValueError(f"labels must be a 2-D array of values in [0, 255], got shape {labels.shape}")
    image = Image.fromarray(labels.astype(np.uint8))  # 2-D uint8 -> mode "L"
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def _batch_names(meta: Any, batch_size: int) -> list[str]:
    names = meta["name"]
    names = [names] if isinstance(names, str) else list(names)
    if len(names) != batch_size:
        raise ValueError(f"meta['name'] has {len(names)} entries for a batch of {batch_size} images")
    return names


# ----------------------------------------------------------------------------------------------------
# Offline generation (SDCA stage 4a)
# ----------------------------------------------------------------------------------------------------


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"pseudo-label order must be one of {', '.join(ORDERS)}, got {order!r}")


@torch.no_grad()
def class_probabilities(model: nn.Module, images: Tensor, size: tuple[int, int], order: str) -> Tensor:
    """(B, K, H, W) probabilities of the main head at `size`, in `order` (module docstring)."""
    _check_order(order)
    if order == SOFTMAX_THEN_UPSAMPLE:
        return upsample(torch.softmax(model(images).logits.float(), dim=1), size)
    return torch.softmax(predict_logits(model, images, size), dim=1)


def labels_order(out_dir: str | os.PathLike[str]) -> str | None:
    """The order a pseudo-label folder was made in (from its thresholds file), None without one; folders written
    before the order was recorded were made by upsampling first."""
    path = Path(out_dir) / THRESHOLDS_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("order", UPSAMPLE_THEN_SOFTMAX)


@torch.no_grad()
def compute_class_thresholds(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    num_classes: int,
    device: str | torch.device = "cpu",
    bins: int = 1000,
    order: str = UPSAMPLE_THEN_SOFTMAX,
) -> ClassThresholds:
    """Pass 1: histograms of max probability per predicted class, probabilities at the input size (in `order`).

    The loader yields ``(image (B, 3, h, w), label, meta)``; labels are unused. Model in eval mode.
    """
    _check_order(order)
    stats = ClassThresholds(num_classes, bins)
    for images, _, _ in loader:
        images = images.to(device)
        stats.update(class_probabilities(model, images, tuple(images.shape[-2:]), order))  # (B, K, h, w)
    return stats


@torch.no_grad()
def generate_pseudo_labels(
    model: nn.Module,
    loader: Iterable[Any],
    out_dir: str | os.PathLike[str],
    *,
    num_classes: int,
    label_size: tuple[int, int],
    cap: float = 0.9,
    device: str | torch.device = "cpu",
    bins: int = 1000,
    overwrite: bool = False,
    order: str = UPSAMPLE_THEN_SOFTMAX,
) -> dict[str, Any]:
    """Write class-wise thresholded pseudo-labels for every image of ``loader`` (SDCA stage 4a).

    Pass 1 computes thresholds thr_c = min(median_c, cap) from probabilities at the network input
    size; pass 2 takes the probabilities at ``label_size`` (H, W) (2048 x 1024 as shipped) and writes
    argmax labels, 255 where max prob < thr[argmax]. Both passes take softmax and upsampling in
    `order`. The loader is iterated twice and must yield the same images in both passes (no shuffling,
    no random augmentation). Only the current batch and the K x bins histograms are held in memory.

    Args:
        model: segmenter returning ``SegOutput``, already on ``device``; put in eval mode during the
            call and restored to its previous mode afterwards.
        loader: yields ``(image (B, 3, h, w), label, meta)`` with ``meta["name"]`` a list of relative
            image paths such as "aachen/aachen_000000_000019_leftImg8bit.png".
        out_dir: output folder; must be absent or empty unless ``overwrite`` (then the old folder is moved
            to ``<out_dir>.previous-<time>`` and the labels are written into an empty one).
        num_classes: K (at most 255; 255 is the ignore value).
        label_size: (H, W) of the written labels.
        cap: upper bound on every class threshold (0.9).
        device: where the images are sent.
        bins: histogram bins in [0, 1] (threshold resolution 1 / bins).
        overwrite: move a non-empty ``out_dir`` aside instead of refusing.
        order: "upsample_then_softmax" (SDCA) or "softmax_then_upsample" (SIM, BAFFT); recorded in the
            thresholds file.

    Returns:
        dict with "thresholds" (K,) float32, "predicted_pixels" (K,) and "kept_pixels" (K,) int64 counts
        at label size (pass 2), "kept_fraction" (K,) float64 (0 for a class never predicted),
        "kept_fraction_all" (float), "num_images" (int) and "out_dir" (Path). The same numbers, as lists,
        go to ``out_dir/thresholds.json``.
    """
    _check_order(order)
    if not 1 <= num_classes <= 255:
        raise ValueError(f"num_classes must be in [1, 255] to fit uint8 PNGs with 255 = ignore, got {num_classes}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"pseudo-label output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"pseudo-label folder {out} is not empty; choose another folder or pass overwrite=True (the old "
                "labels are then moved aside, not deleted)"
            )
        print(f"the previous pseudo-labels in {out} were moved to {move_aside(out)}")
    height, width = (int(s) for s in label_size)

    was_training = model.training
    model.eval()
    try:
        stats = compute_class_thresholds(model, loader, num_classes=num_classes, device=device, bins=bins, order=order)
        thresholds = stats.thresholds(cap)  # (K,)

        predicted = torch.zeros(num_classes, dtype=torch.int64)
        kept = torch.zeros(num_classes, dtype=torch.int64)
        num_images = 0
        for images, _, meta in loader:
            names = _batch_names(meta, images.shape[0])
            probs = class_probabilities(model, images.to(device), (height, width), order)  # (B, K, H, W)
            labels = apply_thresholds(probs, thresholds)  # (B, H, W)
            predicted += torch.bincount(probs.argmax(dim=1).reshape(-1), minlength=num_classes).cpu()
            valid = labels[labels != IGNORE_INDEX]
            kept += torch.bincount(valid, minlength=num_classes).cpu()
            labels_np = labels.to(torch.uint8).cpu().numpy()  # (B, H, W)
            for name, label in zip(names, labels_np, strict=True):  # one file per image
                save_label_png(label, pseudo_label_path(out, name))
            num_images += len(names)
    finally:
        model.train(was_training)

    kept_fraction = kept.double() / predicted.clamp_min(1).double()
    result: dict[str, Any] = {
        "thresholds": thresholds,
        "predicted_pixels": predicted,
        "kept_pixels": kept,
        "kept_fraction": kept_fraction,
        "kept_fraction_all": float(kept.sum()) / max(1, num_images * height * width),
        "num_images": num_images,
        "out_dir": out,
    }
    summary = {
        "num_classes": num_classes,
        "bins": bins,
        "cap": cap,
        "order": order,
        "label_size": [height, width],
        "num_images": num_images,
        "thresholds": thresholds.tolist(),
        "predicted_pixels_pass1": stats.counts.tolist(),
        "predicted_pixels": predicted.tolist(),
        "kept_pixels": kept.tolist(),
        "kept_fraction": kept_fraction.tolist(),
        "kept_fraction_all": result["kept_fraction_all"],
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / THRESHOLDS_FILE, summary)
    return result
