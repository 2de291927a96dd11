"""Orthogonal and clustered embeddings: IW-MaxSquare plus three feature-space losses on class prototypes.

Toldo, Michieli, Zanuttigh, "Unsupervised Domain Adaptation in Semantic Segmentation via Orthogonal and
Clustered Embeddings", WACV 2021, https://arxiv.org/abs/2011.12616; code marco-toldo/UDAclustering
(``tools/train_UDA.py``, ``utils/losses.py``). Per step, with features F (layer4) and predicted labels of both domains:

    L = CE_src + λ_ent·L_iw + λ_cl·L_cl + λ_orth·L_orth + λ_sp·L_sp

Prototypes are batch means over source ∪ target, in the graph (optionally smoothed by the released EMA, which
keeps the classes a batch lacks at their running average). Labels are the
predictions (source ground truth with ``use_source_gt``): softmax at the input size, bilinear downsampling to the
feature size and argmax for the clustering term; the nearest-downsampled argmax for orthogonality and sparsity
(the released code computes the prototypes twice, so does this). Chapter: ``notebooks/clustering.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..losses.clustering import clustering_loss
from ..losses.contrastive import downsample_labels, flatten_pixels
from ..losses.orthogonality import prototype_entropy
from ..losses.prototypes import class_prototypes, smoothed_prototypes
from ..losses.segmentation import multi_level_ce
from ..losses.sparsity import prototype_sparsity
from .base import Backward, Batch, Variant
from .maxsquare import MaxSquare, MaxSquareConfig


@dataclass(frozen=True)
class OrthoClusterConfig(MaxSquareConfig):
    """The GTA5 → Cityscapes ResNet-101 command of UDAclustering's README.md; the other defaults are the code's."""

    iw_ratio: float | None = 0.2
    lambda_cluster: float = 2e-2
    lambda_ortho: float = 2.0
    lambda_sparse: float = 0.5
    cluster_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (source attraction, target attraction, repulsion)
    cluster_norm_order: float = 1.0  # p of ℓ_p
    ortho_temperature: float = 1.0  # T
    ortho_normalize: bool = True  # cosine similarities (False: the released raw dot products)
    sparse_rho: float = 0.5
    sparse_order: float = 2.0
    centroid_smoothing: float | None = None  # s in [0, 1]: the released EMA, c = s·c_batch + (1 − s)·c_avg (None: off)
    use_source_gt: bool = False  # source labels from the ground truth instead of predictions


class OrthoCluster(MaxSquare):
    """IW-MaxSquare + clustering + orthogonality + sparsity on layer4 features (module docstring)."""

    def __init__(self, cfg: OrthoClusterConfig, num_classes: int, *, feature_dim: int = 0, total_iters: int = 0):
        super().__init__(cfg, num_classes, feature_dim=feature_dim, total_iters=total_iters)
        if cfg.centroid_smoothing is not None and not 0 <= cfg.centroid_smoothing <= 1:
            raise ValueError(
                f"ortho_cluster: centroid_smoothing must be in [0, 1] or None, not {cfg.centroid_smoothing}"
            )
        # the EMA's running prototypes (saved in the checkpoint); rows of classes never seen stay zero
        self.register_buffer("centroid_avg", torch.zeros(num_classes, feature_dim))
        self.register_buffer("centroid_seen", torch.zeros(num_classes, dtype=torch.bool))

    def _labels(self, prob: Tensor, size: tuple[int, int], mode: str) -> Tensor:
        """Predicted labels at the feature size: argmax of the probabilities resized bilinearly or by nearest."""
        if mode == "bilinear":
            return F.interpolate(prob.detach(), size=size, mode="bilinear", align_corners=True).argmax(dim=1)
        return downsample_labels(prob.detach().argmax(dim=1), size)

    def _prototypes(self, feats: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The batch prototypes, or with ``centroid_smoothing`` the released EMA, whose running average is updated
        at each call (twice per step, as released)."""
        centroids, seen = class_prototypes(feats, labels, self.num_classes)
        if self.cfg.centroid_smoothing is None:
            return centroids, seen
        smoothed, known = smoothed_prototypes(
            centroids, seen, self.centroid_avg, self.centroid_seen, self.cfg.centroid_smoothing
        )
        self.centroid_avg[known] = smoothed[known].detach().to(self.centroid_avg.dtype)
        self.centroid_seen |= known
        return smoothed, known

    def training_step(self, model, source: Batch, target: Batch, step: int, backward: Backward) -> dict[str, Tensor]:
        cfg = self.cfg
        out_s = model(source.image)  # its graph is kept to the one backward: the feature losses use it too
        seg = multi_level_ce(out_s, source.label, cfg.lambda_seg_aux)
        out_t = model(target.image)
        ms, prob_t = self.target_loss(out_t, target)
        # each domain's labels at its own feature size: the paper's source and target images differ in size
        size_s, size_t = tuple(out_s.features.shape[-2:]), tuple(out_t.features.shape[-2:])
        prob_s = F.interpolate(out_s.logits, size=tuple(source.image.shape[-2:]), mode="bilinear", align_corners=True)
        prob_s = prob_s.float().softmax(dim=1)
        feats_s, feats_t = flatten_pixels(out_s.features).float(), flatten_pixels(out_t.features).float()
        both = torch.cat([feats_s, feats_t])

        labels = {}
        for mode in ("bilinear", "nearest"):
            y_s = (
                downsample_labels(source.label, size_s) if cfg.use_source_gt else self._labels(prob_s, size_s, mode)
            ).reshape(-1)
            labels[mode] = (y_s, self._labels(prob_t, size_t, mode).reshape(-1))
        y_s, y_t = labels["bilinear"]
        centroids, seen = self._prototypes(both, torch.cat([y_s, y_t]))
        cl = clustering_loss(
            feats_s, y_s, feats_t, y_t, centroids, seen, p=cfg.cluster_norm_order, weights=cfg.cluster_weights
        )
        centroids_n, seen_n = self._prototypes(both, torch.cat(labels["nearest"]))
        orth = prototype_entropy(both, centroids_n[seen_n], cfg.ortho_temperature, cfg.ortho_normalize)
        sp = prototype_sparsity(centroids_n[seen_n], cfg.sparse_rho, cfg.sparse_order)
        loss = ms + cfg.lambda_cluster * cl + cfg.lambda_ortho * orth + cfg.lambda_sparse * sp
        backward(seg + loss)  # one backward of the sum: the released code's per-term backward with retain_graph
        return {"seg": seg.detach(), "ms": ms.detach(), "cl": cl.detach(), "orth": orth.detach(), "sp": sp.detach()}


VARIANTS = {
    "ortho_cluster": Variant(
        OrthoCluster,
        OrthoClusterConfig(),
        "orthogonal and clustered embeddings: IW-MaxSquare + clustering, orthogonality and sparsity of prototypes",
    ),
}
