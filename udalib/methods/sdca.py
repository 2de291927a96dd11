"""SDCA: semantic distribution-aware contrastive adaptation (Li, Xie, Zang, Liu, Cheng, Yang, Wang,
"Semantic Distribution-aware Contrastive Adaptation for Semantic Segmentation", arXiv 2105.05013, 2021).

Chapter: ``notebooks/sdca.ipynb``. Released code: BinhuiXie/SDCA, files named below. The estimator and the loss
live in ``udalib.losses.contrastive``; this file composes them into SDCA's stages.

The idea. Each class c of the *source* domain is summarised by a Gaussian N(mu_c, lambda*Sigma_c) over pixel
representations z (backbone features, A = 2048 / 1024 channels, and, "multi-level", the K logits). A pixel with class
y (source: ground truth; target: confident pseudo-label) is pulled towards samples of its class's distribution and
pushed from the other classes' ones by InfoNCE with temperature tau. Averaging over infinitely many sampled pairs
and moving the expectation inside the log (Jensen) gives, with the Gaussian moment-generating function, a closed
upper bound that needs neither a memory bank nor pair sampling (the trick of ISDA, Wang et al., NeurIPS
2019, arXiv 1909.12220):

    L_bar(z, y) = -z^T mu_y / tau + log sum_{c=1..K} exp( z^T mu_c / tau + lambda / (2 tau^2) * z^T Sigma_c z )

with diagonal Sigma_c (the author: "due to GPU memory limitation"). As shipped (``normalize_cov=True``),
z and mu_c are L2-normalised, the variance vector of each class is L2-normalised across dimensions, lambda = 1 and
tau = 100: the loss then stays near log K and behaves as a high-temperature cosine-prototype loss whose covariance
term is almost inert (the chapter measures this). ``normalize_cov=False`` is the textbook bound on raw statistics.

The stages (train_with_ssl.sh), each a registered variant that ``udalib.stages`` chains via ``stage:<method>``:

1. ``sdca_source``: source-only DeepLab-v2 (one head, FrozenBN) with L = CE + 0.75 * Lovasz-softmax.
2. Estimator initialisation: one pass of the stage-1 model over the whole source set (eval, no_grad, no
   augmentation), done by ``SDCA.prepare`` at the fresh start of stage 3.
3. ``sdca``: from the stage-1 weights, each iteration (train_sdca.py): forward source and target; add the source batch
   (detached, labels nearest-downsampled to the feature size) to both estimators *before* the loss; then

       L = CE(src) + lambda_lov * Lovasz(src)
           + lambda_feat * (L_bar_feat(S, GT) + L_bar_feat(T, PL)) + lambda_out * (L_bar_out(S, GT) + L_bar_out(T, PL))

   where PL = argmax softmax(target logits) at feature resolution, 255 where the max *probability* < delta = 0.9
   (``udalib.pseudo_labels.threshold_labels``); the statistics enter detached; one backward.
4. ``sdca_ssl``: class-wise median-thresholded pseudo-labels of the stage-3 model on target train (4a,
   ``udalib.pseudo_labels``), then a fresh network from ImageNet trained with CE on them (4b, ``Supervised``
   on target pseudo-labels).

Where we differ from the released code (on purpose, or because our data pipeline lacks something):

- Model selection: the official pipeline picks the stage-1 and stage-3 checkpoints by mIoU on the *target val*
  set (an oracle choice, ``test.py:test_all``). Every stage here hands its **last** checkpoint to the next one.
- Estimators: the official DDP processes each keep their own, unsynchronised statistics. ``ClassStatistics``
  all-reduces each batch's per-class sums, so every rank holds the statistics of the global batch; the initial
  pass runs on every rank over the whole source set (identical statistics, no all-reduce). Statistics are
  cumulative (not an EMA), in float64, from per-class sums instead of the official N x K x A temporaries.
- Batch: the paper preset keeps the global batch of 8 (stage 3: 4 source + 4 target) on one GPU with gradient
  accumulation; the estimator is then updated per micro-batch, which equals the synchronised update of the
  official per-GPU batches.
- SSL (stage 4b): random scale 0.5-1.5 of the full-resolution target image, crop at the training size and
  horizontal flip (``DataConfig.labelled_aug="scale_crop"``), evaluated at full resolution, as the official configs do;
  their R101 colour jitter/grayscale/blur on target is not applied. BN there is ordinary trainable BN, with
  statistics of each micro-batch (2 images) rather than SyncBN over 8.
- Normalisation: the paper preset uses ImageNet RGB statistics (the R101 configs and torchvision weights).
  The official VGG-16 configs use Caffe weights with BGR x 255 (``normalization="vgg_bgr255"``); with
  torchvision's VGG-16 keep ImageNet RGB. The feature-level estimator's dimension A is the model's feature channels
  (``Method.feature_dim``, given by the trainer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..config import IGNORE_INDEX
from ..losses import (
    ClassStatistics,
    contrastive_bound,
    downsample_labels,
    flatten_pixels,
    lovasz_softmax_logits,
    seg_ce,
)
from ..models.output import SegOutput
from ..pseudo_labels import threshold_labels
from .base import Backward, Batch, Method, Variant
from .supervised import Supervised, SupervisedConfig


@dataclass(frozen=True)
class SDCASourceConfig:
    """Stage 1, source-only (``train_with_ssl.sh``)."""

    lambda_lov: float = 0.75  # λ_lov: Lovász-softmax weight, SOLVER.LAMBDA_LOV from train_with_ssl.sh


@dataclass(frozen=True)
class SDCAConfig:
    """Stage 3, the adaptation (``train_sdca.py`` unless stated)."""

    lambda_lov: float = 0.75  # λ_lov: LAMBDA_LOV, Lovász-softmax on source (train_sdca.py)
    lambda_feat: float = 1.0  # λ_feat: LAMBDA_FEAT, feature-level bound (train_sdca.py)
    lambda_out: float = 1.0  # λ_out: LAMBDA_OUT, output-level (logit) bound (train_sdca.py)
    tau: float = 100.0  # τ: SOLVER.TAU, "to balance the scale" of many pixel pairs (PixelContrastiveLoss)
    lambda_cov: float = 1.0  # λ: covariance scale; no config key, 1 in the code (PixelContrastiveLoss)
    normalize_cov: bool = True  # L2-normalise z, μ_c, variance vectors (as shipped); False = textbook bound
    delta: float = 0.9  # δ: SOLVER.DELTA, on-the-fly target threshold on softmax *probabilities* (train_sdca.py)
    multi_level: bool = True  # SOLVER.MULTI_LEVEL: output-level estimator and term on (core/models, train_sdca.py)
    use_target: bool = True  # target terms L̄(T, PL) on (train_sdca.py); False = source-only contrast (an ablation)
    estimator_init_pass: bool = True  # fill the estimators with one pass over the source set at the start


def _check_single_head(out: SegOutput) -> None:
    if out.aux_logits is not None:
        raise ValueError(
            "SDCA's DeepLab-v2 has one classifier head (core/models/classifier.py): train it with multi_level=False "
            "(the aux head would get no loss and no gradient)"
        )


def source_seg_losses(out: SegOutput, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(CE, Lovász-softmax) of the source logits upsampled (bilinear, align_corners) to the label size (train_sdca.py).

    Args:
        out: the model's outputs; ``out.logits`` (B, K, h, w).
        labels: (B, H, W) trainIds, 255 = void.
    """
    _check_single_head(out)
    return seg_ce(out.logits, labels), lovasz_softmax_logits(out.logits, labels)


class SDCASource(Method):
    """Stage 1 (``sdca_source``): L = CE(src) + λ_lov·Lovász-softmax(src); the target is never seen."""

    uses_target = False

    def training_step(
        self, model: nn.Module, source: Batch, target: Batch | None, step: int, backward: Backward
    ) -> dict[str, Tensor]:
        ce, lov = source_seg_losses(model(source.image), source.label)
        loss = ce + self.cfg.lambda_lov * lov
        backward(loss)
        return {"loss": loss.detach(), "ce": ce.detach(), "lovasz": lov.detach()}


class SDCA(Method):
    """Stage 3 (``sdca``): supervised source losses plus the distribution-aware contrastive bound at the feature
    and output levels, for source (GT) and target (on-the-fly pseudo-label) pixels, against the *source* class
    statistics (``train_sdca.py``).

    State (in ``state_dict``, so checkpoints and resume carry it):
        feat_stats: ``ClassStatistics(K, A)``, A = ``feature_dim`` (the model's feature channels): per-class
            count, mean, diagonal variance of features.
        out_stats:  ``ClassStatistics(K, K)``, the same for logits.
    Both are built in ``__init__`` (the trainer loads a checkpoint into them on resume without calling
    ``prepare``); ``prepare`` fills them with the initial pass over the source set.

    Example (what the trainer does)::

        method = SDCA(SDCAConfig(), num_classes=19, feature_dim=128)
        method.prepare(model, labelled_eval_loader, device)    # estimator pass, fresh runs only
        logs = method.training_step(model, src, tgt, step, backward)
    """

    def __init__(self, cfg: SDCAConfig, num_classes: int, *, feature_dim: int, total_iters: int = 0):
        super().__init__(cfg, num_classes, feature_dim=feature_dim, total_iters=total_iters)
        self.feat_stats = ClassStatistics(num_classes, feature_dim)  # (K, A) feature level
        self.out_stats = ClassStatistics(num_classes, num_classes)  # (K, K) output level

    def _check_output(self, out: SegOutput) -> None:
        _check_single_head(out)
        a = out.features.shape[1]
        if a != self.feature_dim:
            raise ValueError(
                f"SDCA's feature-level estimator was built with feature_dim = {self.feature_dim} "
                f"channels, but the model's features have {a}: build the method with feature_dim={a}"
            )
        if out.logits.shape[1] != self.num_classes:
            raise ValueError(f"model predicts {out.logits.shape[1]} classes, SDCA was built for {self.num_classes}")
        if out.logits.shape[-2:] != out.features.shape[-2:]:
            raise ValueError(
                f"SDCA needs logits and features at the same resolution, got "
                f"{tuple(out.logits.shape[-2:])} and {tuple(out.features.shape[-2:])}"
            )

    @torch.no_grad()
    def prepare(self, model: nn.Module, labelled_loader: Any, device: torch.device) -> None:
        """The estimators' initial pass (``semantic_dist_init.py``): every source image once, model in
        eval mode, no gradient, labels nearest-downsampled to the feature size. The loader yields
        ``(image, label, meta)`` tuples (or ``Batch``es) without augmentation. Every DDP rank sees the whole
        set, so the rank-local merge gives identical statistics everywhere (no all-reduce here)."""
        if not self.cfg.estimator_init_pass:
            return
        was_training = model.training
        model.eval()
        try:
            for batch in labelled_loader:
                image, label = (batch.image, batch.label) if isinstance(batch, Batch) else (batch[0], batch[1])
                out = model(image.to(device))
                self._check_output(out)
                y = downsample_labels(label.to(device), out.features.shape[-2:]).reshape(-1)  # (B*h*w,)
                self.feat_stats.merge_sums(self.feat_stats.batch_sums(flatten_pixels(out.features), y))
                if self.cfg.multi_level:
                    self.out_stats.merge_sums(self.out_stats.batch_sums(flatten_pixels(out.logits), y))
        finally:
            model.train(was_training)

    def _bound(self, pixels: Tensor, labels: Tensor, stats: ClassStatistics) -> Tensor:
        """Mean L̄ over the valid pixels (N, A) against `stats` (detached inside ``contrastive_bound``)."""
        return contrastive_bound(
            pixels,
            labels,
            stats.mean,
            stats.var,
            tau=self.cfg.tau,
            lambda_cov=self.cfg.lambda_cov,
            normalize=self.cfg.normalize_cov,
        )

    def training_step(
        self, model: nn.Module, source: Batch, target: Batch | None, step: int, backward: Backward
    ) -> dict[str, Tensor]:
        cfg = self.cfg
        out_s = model(source.image)
        self._check_output(out_s)
        size = out_s.features.shape[-2:]  # (h, w), the output stride
        y_s = downsample_labels(source.label, size).reshape(-1)  # (B*h*w,) GT at feature resolution
        feat_s = flatten_pixels(out_s.features)  # (B*h*w, A)
        logit_s = flatten_pixels(out_s.logits)  # (B*h*w, K)

        # 1. Source pixels enter the statistics before the loss (train_sdca.py); target pixels never do.
        self.feat_stats.update(feat_s, y_s)
        if cfg.multi_level:
            self.out_stats.update(logit_s, y_s)

        # 2. Supervised source losses on logits upsampled to the label size.
        ce, lov = source_seg_losses(out_s, source.label)
        zero = ce.new_zeros(())
        feat_src = self._bound(feat_s, y_s, self.feat_stats) if cfg.lambda_feat else zero
        out_src = self._bound(logit_s, y_s, self.out_stats) if cfg.multi_level and cfg.lambda_out else zero

        # 3. Target pixels with confident on-the-fly pseudo-labels (probabilities, not logits: train_sdca.py).
        feat_tgt, out_tgt, kept = zero, zero, zero
        if cfg.use_target:
            if target is None:
                raise ValueError("SDCA with use_target=True needs a target batch")
            out_t = model(target.image)
            self._check_output(out_t)
            y_t = threshold_labels(out_t.logits, cfg.delta).reshape(-1)  # (B*h*w,), 255 below delta
            kept = (y_t != IGNORE_INDEX).float().mean()
            if cfg.lambda_feat:
                feat_tgt = self._bound(flatten_pixels(out_t.features), y_t, self.feat_stats)
            if cfg.multi_level and cfg.lambda_out:
                out_tgt = self._bound(flatten_pixels(out_t.logits), y_t, self.out_stats)

        loss = (
            ce + cfg.lambda_lov * lov + cfg.lambda_feat * (feat_src + feat_tgt) + cfg.lambda_out * (out_src + out_tgt)
        )
        backward(loss)
        logs = {
            "loss": loss,
            "ce": ce,
            "lovasz": lov,
            "feat_src": feat_src,
            "feat_tgt": feat_tgt,
            "out_src": out_src,
            "out_tgt": out_tgt,
            "pl_kept": kept,
        }
        return {k: v.detach() for k, v in logs.items()}


VARIANTS = {
    "sdca_source": Variant(SDCASource, SDCASourceConfig(), "SDCA stage 1: source-only with CE + 0.75 Lovász"),
    "sdca": Variant(SDCA, SDCAConfig(), "SDCA stage 3: the distribution-aware contrastive bound, from stage 1"),
    # train_ssl.py: CE on the stage-3 model's pseudo-labels only, single head (no aux CE)
    "sdca_ssl": Variant(
        Supervised,
        SupervisedConfig(lambda_seg_aux=0.0),
        "SDCA stage 4: self-training on the stage-3 model's pseudo-labels",
    ),
}
