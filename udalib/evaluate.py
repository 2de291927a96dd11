"""Streaming evaluation: one confusion matrix over the whole set, per-class IoU, mIoU over 19/16/13 classes.

Protocol (AdaptSegNet ``compute_iou.py``): hist[gt, pred] += bincount(K·gt + pred) over pixels with 0 ≤ gt < K;
IoU_c = hist[c,c] / (row_c + col_c − hist[c,c]); mIoU = nanmean over the protocol's classes, accumulated over the
dataset (not per image). Predictions are never kept in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .data.labels import IGNORE_INDEX, REPORTED_SUBSETS, Protocol, get_protocol
from .inference import predict_logits


class ConfusionMatrix:
    """K×K confusion matrix (rows: ground truth, columns: prediction), updated with one bincount per batch.

    A prediction outside 0..K-1 (a void 255 in a PNG of predictions) is no class: as in cityscapesscripts it is a
    miss of the ground-truth class (``void_pred``, counted in its IoU's false negatives) and no class's false
    positive.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.void_pred = torch.zeros(num_classes, dtype=torch.int64, device=device)  # (K,) GT class, void prediction

    def update(self, target: Tensor, pred: Tensor) -> None:
        """target, pred: integer tensors of the same shape; target 255 (or any id ≥ K) is ignored."""
        k = self.num_classes
        target, pred = target.reshape(-1).to(self.mat.device), pred.reshape(-1).to(self.mat.device)
        valid = (target >= 0) & (target < k)
        classed = valid & (pred >= 0) & (pred < k)
        idx = k * target[classed].long() + pred[classed].long()
        self.mat += torch.bincount(idx, minlength=k * k).reshape(k, k)
        self.void_pred += torch.bincount(target[valid & ~classed].long(), minlength=k)

    def reduce(self) -> None:
        """Sum the matrices of all DDP ranks (no-op outside torch.distributed)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.mat)
            dist.all_reduce(self.void_pred)

    def pixel_accuracy(self) -> float:
        """Share of labelled pixels predicted as their class, in [0, 1] (a void prediction is a miss)."""
        mat = self.mat.cpu().numpy()
        return float(np.trace(mat) / max(mat.sum() + int(self.void_pred.sum()), 1))

    def iou(self) -> np.ndarray:
        """(K,) IoU per class in [0, 1]; NaN for a class absent from both ground truth and predictions."""
        h = self.mat.double().cpu().numpy()
        tp = np.diag(h)
        gt = h.sum(1) + self.void_pred.double().cpu().numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            return tp / (h.sum(0) + gt - tp)


@dataclass
class EvalResult:
    """Per-class IoU and mIoU over each reported class subset, in percent."""

    classes: tuple[str, ...]
    per_class_iou: dict[str, float]
    miou: dict[int, float]  # number of classes → mIoU (19; or 16 and 13 for SYNTHIA)
    pixel_accuracy: float
    confusion: np.ndarray = field(repr=False)

    @property
    def main_miou(self) -> float:
        return self.miou[len(self.classes)]

    def table(self) -> str:
        width = max(len(c) for c in self.classes)
        lines = [f"{'class':<{width}}  IoU"]
        lines += [f"{c:<{width}}  {v:5.1f}" for c, v in self.per_class_iou.items()]
        lines += [f"{'mIoU (' + str(k) + ')':<{width}}  {v:5.1f}" for k, v in self.miou.items()]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "classes": len(self.classes),
            "miou": self.main_miou,
            "miou_by_classes": self.miou,
            "per_class_iou": self.per_class_iou,
            "pixel_accuracy": self.pixel_accuracy,
        }


def summarize(cm: ConfusionMatrix, protocol: Protocol) -> EvalResult:
    """Per-class IoU and the protocol's reported mIoUs (16-class SYNTHIA also reports mIoU* over 13)."""
    if cm.num_classes != protocol.num_classes:
        raise ValueError(
            f"confusion matrix has {cm.num_classes} classes, protocol {protocol.name} has {protocol.num_classes}"
        )
    iou = cm.iou() * 100
    miou = {}
    for sub in REPORTED_SUBSETS[protocol.name]:
        idx = protocol.subset_indices(sub.classes)
        miou[sub.num_classes] = float(np.nanmean(iou[idx])) if not np.all(np.isnan(iou[idx])) else float("nan")
    per_class = {c: round(float(v), 4) for c, v in zip(protocol.classes, iou)}
    return EvalResult(protocol.classes, per_class, miou, cm.pixel_accuracy() * 100, cm.mat.cpu().numpy())


def _protocol(protocol: Protocol | str) -> Protocol:
    return get_protocol(protocol) if isinstance(protocol, str) else protocol


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    protocol: Protocol | str,
    *,
    device: torch.device | str = "cpu",
    ensemble: Iterable[tuple[nn.Module, float]] = (),
    amp_dtype: torch.dtype | None = None,
) -> EvalResult:
    """Evaluate `model` on `loader` (image at network input size, label at full resolution).

    Logits are upsampled bilinearly (align_corners=True) to the label size, then argmax (as the seeds). `ensemble`
    adds other (model, weight) pairs whose upsampled logits are summed with the main model's, weighted; the main
    model then gets weight 1 − Σ weights (ADVENT's AdvEnt+MinEnt 0.5/0.5 ensemble, ``eval_UDA.py:eval_single``).
    """
    protocol = _protocol(protocol)
    others = list(ensemble)
    main_w = 1.0 - sum(w for _, w in others)
    members = [(model, main_w)] + others
    was_training = [m.training for m, _ in members]
    for m, _ in members:
        m.eval()
    cm = ConfusionMatrix(protocol.num_classes, device)
    try:
        for images, labels, _ in loader:
            images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            size = tuple(labels.shape[-2:])
            with torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = sum(w * predict_logits(m, images, size) for m, w in members)
            cm.update(labels, logits.argmax(1))
    finally:
        for (m, _), t in zip(members, was_training):
            m.train(t)
    cm.reduce()
    return summarize(cm, protocol)


def score_folders(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    protocol: Protocol | str = "cityscapes19",
    *,
    gt_suffix: str = "_gtFine_labelIds.png",
    pred_suffix: str = "_leftImg8bit.png",
    gt_encoding: str = "labelIds",
) -> EvalResult:
    """Score a folder of predicted train-id PNGs against ground truth, as the seeds' ``compute_iou.py`` does.

    Predictions are matched to ground truth by relative path with `pred_suffix` replaced by `gt_suffix`
    (Cityscapes: ``<city>/<stem>_leftImg8bit.png`` ↔ ``<city>/<stem>_gtFine_labelIds.png``). Ground truth in
    Cityscapes labelIds is mapped to train ids by the protocol; `gt_encoding="trainIds"` takes it as is.
    """
    from PIL import Image

    protocol = _protocol(protocol)
    pred_root, gt_root = Path(pred_dir), Path(gt_dir)
    preds = sorted(pred_root.rglob(f"*{pred_suffix}"))
    if not preds:
        raise FileNotFoundError(f"no predictions matching *{pred_suffix} under {pred_root}")
    cm = ConfusionMatrix(protocol.num_classes)
    for p in preds:
        rel = p.relative_to(pred_root).as_posix()
        g = gt_root / (rel[: -len(pred_suffix)] + gt_suffix)
        if not g.exists():
            raise FileNotFoundError(f"prediction {p} has no ground truth {g}")
        gt = np.asarray(Image.open(g))
        pred = np.asarray(Image.open(p))
        if gt.shape != pred.shape:
            raise ValueError(
                f"{p}: prediction is {pred.shape[1]}x{pred.shape[0]}, ground truth {g} is {gt.shape[1]}x{gt.shape[0]}"
            )
        if gt_encoding == "labelIds":
            gt = protocol.cityscapes_lut[gt]
        cm.update(torch.from_numpy(gt.astype(np.int64)), torch.from_numpy(pred.astype(np.int64)))
    return summarize(cm, protocol)


__all__ = ["ConfusionMatrix", "EvalResult", "summarize", "evaluate", "score_folders", "IGNORE_INDEX"]
