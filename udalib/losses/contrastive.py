"""SDCA: semantic distribution estimator and the closed-form pixel contrastive upper bound.

Li, Xie, Zang, Liu, Cheng, Yang, Wang, "Semantic Distribution-aware Contrastive Adaptation for Semantic
Segmentation", arXiv 2105.05013 (2021). The Gaussian moment-generating-function trick that turns
infinitely many sampled pairs into a closed form is from ISDA: Wang et al., "Implicit Semantic Data
Augmentation for Deep Networks", NeurIPS 2019, https://arxiv.org/abs/1909.12220.
Released code: SDCA ``core/utils/semantic_dist_estimator.py`` (estimator), ``core/utils/loss.py:PixelContrastiveLoss``.
The book's SDCA chapter explains both.

Two pure pieces, composed by the SDCA method file:

* ``ClassStatistics``: per-class count N_c, mean mu_c and diagonal (biased) variance sigma^2_c of pixel
  representations (backbone features, A = 2048/1024, or logits, A = K), cumulative over every source
  pixel ever seen (not an EMA), merged exactly from per-class sums (the pooled update of Chan, Golub,
  LeVeque, "Updating formulae and a pairwise algorithm for computing sample variances", 1979).
* ``contrastive_bound``: for a pixel z with class y,

      L_bar(z, y) = -z.mu_y / tau + log sum_c exp(z.mu_c / tau + lambda / (2 tau^2) * z^T Sigma_c z)

  computed as cross-entropy on "bound logits" plus the positive variance term (see its docstring).

Example::

    stats = ClassStatistics(num_classes=19, dim=2048)
    stats.update_from_maps(out_src.features, labels_src)                     # before the loss
    y = downsample_labels(labels_src, out_src.features.shape[-2:])         # (B, h, w)
    loss = contrastive_bound(flatten_pixels(out_src.features), y.reshape(-1), stats.mean, stats.var)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from udalib.config import IGNORE_INDEX

_CHUNK_ELEMENTS_CPU = 1 << 18  # float64 temporaries per chunk in update(): 2 MiB on CPU (fits in cache);
_CHUNK_ELEMENTS_ACCEL = 1 << 24  # 128 MiB on GPU (few kernel launches)


def downsample_labels(labels: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Nearest-neighbour resize of integer labels (B, H, W) to (B, h, w), as the seeds do (on floats).

    255 stays 255 exactly: nearest interpolation only copies values.
    """
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.long()
    small = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")  # (B, 1, h, w)
    return small[:, 0].long()  # (B, h, w)


def flatten_pixels(maps: Tensor) -> Tensor:
    """(B, A, h, w) -> (B*h*w, A), pixel-major in the order of ``labels.reshape(-1)`` for (B, h, w) labels."""
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


class ClassStatistics(nn.Module):
    """Per-class count, mean and diagonal variance of pixel representations (SDCA's estimator).

    Buffers (saved in ``state_dict``):
        count: (K,)   N_c, number of pixels of class c seen so far.
        mean:  (K, A) mu_c.
        var:   (K, A) sigma^2_c, biased (divided by N_c), per dimension (diagonal covariance: the full
               K x A x A one would be ~319 MB for A = 2048 and N*K*A^2 FLOPs in the loss).

    Storage is float64 on purpose: N_c grows past 3.6e8 source pixels in the shipped init pass, beyond
    float32's exact integer range (2^24 = 1.7e7), and late merges have weights w_c ~ 1e-5 whose increments
    float32 would round away. The cost is 2*K*A + K doubles (~0.6 MB for K = 19, A = 2048). The loss casts
    mean/var to the features' dtype. (Devices without float64, e.g. Apple MPS, are not supported.)

    Update (exact pooled merge of a batch with n_c pixels, batch mean m_c and biased variance v_c):
        w_c = n_c / (N_c + n_c)                         (0 when both are 0)
        delta = m_c - mu_c
        mu_c   <- mu_c + w_c * delta
        var_c  <- (1 - w_c) var_c + w_c v_c + w_c (1 - w_c) delta^2
        N_c    <- N_c + n_c
    so the state always equals the mean/variance of all pixels seen, whatever the batch split. Classes
    absent from a batch are unchanged. Batch sums n, sum x, sum x^2 use ``index_add_`` in float64, O(N*A)
    memory and time, never the N x K x A temporaries of the official code.

    Distributed: when ``torch.distributed`` is initialised, the batch's (n, sum, sum of squares) are
    all-reduced before the merge, so every rank holds identical statistics of the global batch. The
    official SDCA code does *not* synchronise: each DDP process keeps its own estimator. ``update`` is then
    a collective: every rank must call it the same number of times.

    No autograd: inputs are detached and the update runs under ``torch.no_grad``.
    """

    count: Tensor
    mean: Tensor
    var: Tensor

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.dim = int(dim)
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(num_classes, dim, dtype=torch.float64))
        self.register_buffer("var", torch.zeros(num_classes, dim, dtype=torch.float64))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.dim}"

    @torch.no_grad()
    def batch_sums(self, features: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
        """Per-class (n, sum x, sum x^2) of one batch, packed as a float64 (K, 1 + 2A) tensor.

        Args:
            features: (N, A) pixel representations.
            labels: (N,) integer labels in [0, K) or ``ignore_index``.
        """
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must be (N, {self.dim}), got {tuple(features.shape)}")
        if labels.shape != features.shape[:1]:
            raise ValueError(f"labels must be ({features.shape[0]},), got {tuple(labels.shape)}")
        k, a = self.num_classes, self.dim
        feats = features.detach()
        labels = labels.detach().to(device=feats.device, dtype=torch.long)
        # Ignored pixels go to a scratch row K that is dropped at the end: no boolean-index copy of feats.
        ignored = labels == ignore_index
        if bool((~ignored & ((labels < 0) | (labels >= k))).any()):
            raise ValueError(f"labels must lie in [0, {k}) or equal {ignore_index}")
        rows_of = torch.where(ignored, torch.full_like(labels, k), labels)  # (N,) in [0, K]

        count = torch.zeros(k + 1, dtype=torch.float64, device=feats.device)  # (K+1,)
        total = torch.zeros(k + 1, a, dtype=torch.float64, device=feats.device)  # (K+1, A)
        total_sq = torch.zeros(k + 1, a, dtype=torch.float64, device=feats.device)  # (K+1, A)
        count.index_add_(0, rows_of, torch.ones_like(rows_of, dtype=torch.float64))
        # Chunks bound the float64 temporaries: small on CPU (cache-friendly), large on accelerators.
        chunk_elements = _CHUNK_ELEMENTS_CPU if feats.device.type == "cpu" else _CHUNK_ELEMENTS_ACCEL
        step = max(1, chunk_elements // max(a, 1))
        for start in range(0, rows_of.numel(), step):
            x = feats[start : start + step].to(torch.float64)  # (n, A)
            idx = rows_of[start : start + step]  # (n,)
            total.index_add_(0, idx, x)
            total_sq.index_add_(0, idx, x * x)
        return torch.cat([count[:k, None], total[:k], total_sq[:k]], dim=1)  # (K, 1 + 2A)

    @torch.no_grad()
    def merge_sums(self, sums: Tensor) -> None:
        """Merge packed per-class (n, sum x, sum x^2) (K, 1 + 2A) into the running statistics (exact)."""
        a = self.dim
        sums = sums.to(device=self.mean.device, dtype=torch.float64)
        n = sums[:, 0]  # (K,)
        n_safe = n.clamp_min(1.0)[:, None]  # (K, 1); absent classes get w = 0 below
        batch_mean = sums[:, 1 : 1 + a] / n_safe  # (K, A)
        batch_var = (sums[:, 1 + a :] / n_safe - batch_mean**2).clamp_min(0.0)  # (K, A), biased
        total = self.count + n  # (K,)
        w = torch.where(total > 0, n / total.clamp_min(1.0), torch.zeros_like(n))[:, None]  # (K, 1)
        delta = batch_mean - self.mean  # (K, A)
        self.var.copy_((1.0 - w) * self.var + w * batch_var + w * (1.0 - w) * delta**2)
        self.mean.add_(w * delta)
        self.count.copy_(total)

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> None:
        """Add a batch of labelled pixels to the statistics.

        Args:
            features: (N, A) pixel representations (any float dtype; detached here).
            labels: (N,) integer labels in [0, K); ``ignore_index`` (255) pixels are dropped.
        """
        sums = self.batch_sums(features, labels, ignore_index)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)  # same global-batch statistics on every rank
        self.merge_sums(sums)

    @torch.no_grad()
    def update_from_maps(self, features: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> None:
        """Update from dense maps: labels are nearest-downsampled to the feature resolution first.

        Args:
            features: (B, A, h, w) backbone features or logits at the output stride.
            labels: (B, H, W) ground-truth trainIds at image resolution (255 = void).
        """
        labels_small = downsample_labels(labels, features.shape[-2:])  # (B, h, w)
        self.update(flatten_pixels(features), labels_small.reshape(-1), ignore_index)  # (B*h*w, A), (B*h*w,)


def contrastive_bound(
    features: Tensor,
    labels: Tensor,
    mean: Tensor,
    var: Tensor,
    tau: float = 100.0,
    lambda_cov: float = 1.0,
    normalize: bool = True,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """SDCA's pixel contrastive loss, in closed form (upper bound of InfoNCE against class Gaussians).

    With f the pixel feature, mu_c the class means and s_c the diagonal class variances:

        bound logit_c = f.mu_c / tau + lambda / (2 tau^2) * sum_a f_a^2 s_{c,a}         (N, K)
        L_bar(f, y)   = -f.mu_y / tau + logsumexp_c(bound logit_c)
                      = CE(bound logits, y) + lambda / (2 tau^2) * sum_a f_a^2 s_{y,a}

    (CE = -logit_y + logsumexp, and logit_y contains the positive variance term, which the second
    summand adds back: the positive's expectation is exact and has no variance term.) The loss is the
    mean of L_bar over the valid pixels.

    ``normalize=True`` reproduces ``loss.py:PixelContrastiveLoss``: f <- f / ||f||, mu_c <- mu_c / ||mu_c||
    and s_c <- s_c / ||s_c|| (the variance *vector* L2-normalised across dimensions, a heuristic rescaling,
    not the variance of normalised features), with lambda = 1 and tau = 100. Then the mean term lies in
    [-1/tau, 1/tau], the variance term is at most 1/(2 tau^2), and the loss stays close to log K: in
    practice a high-temperature cosine-prototype loss whose covariance term is almost inert.
    ``normalize=False`` is the textbook bound on raw features, means and variances (scale-dependent).

    Args:
        features: (N, A) pixel representations (gradient flows into them).
        labels: (N,) class per pixel (GT for source, thresholded pseudo-label for target), or ``ignore_index``.
        mean: (K, A) class means; detached here.
        var: (K, A) class diagonal variances; detached here.
        tau: temperature (100 as shipped).
        lambda_cov: lambda, the covariance scale (1 as shipped; no config key in the official code).
        normalize: apply the shipped L2 normalisations (True) or not (False).
        ignore_index: label excluded from the loss.

    Returns:
        Scalar float32 tensor (float64 for float64 features); 0 attached to the graph if no pixel is valid.
    """
    if features.dim() != 2 or mean.shape != var.shape or mean.shape[1] != features.shape[1]:
        raise ValueError(
            f"expected features (N, A), mean and var (K, A); got {tuple(features.shape)}, "
            f"{tuple(mean.shape)}, {tuple(var.shape)}"
        )
    valid = labels != ignore_index
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    f = features[valid].to(dtype)  # (N', A)
    y = labels[valid].long()  # (N',)
    if y.numel() == 0:
        return features.sum().to(dtype) * 0.0
    mu = mean.detach().to(device=f.device, dtype=dtype)  # (K, A)
    sigma2 = var.detach().to(device=f.device, dtype=dtype)  # (K, A)
    if normalize:
        f = F.normalize(f, dim=1)
        mu = F.normalize(mu, dim=1)
        sigma2 = F.normalize(sigma2, dim=1)

    mean_term = f @ mu.t() / tau  # (N', K)
    var_term = (f * f) @ sigma2.t() * (lambda_cov / (2.0 * tau**2))  # (N', K): z^T Sigma_c z, diagonal
    bound_logits = mean_term + var_term  # (N', K)
    positive_var = var_term.gather(1, y[:, None]).squeeze(1)  # (N',)
    return F.cross_entropy(bound_logits, y) + positive_var.mean()
