"""What the chapters measure before they draw: class statistics of datasets, a model's predictions and pixel
features, t-SNE embeddings, class-mean similarities and entropy. Everything returns numbers (numpy arrays, or a
tensor of probabilities), so a chapter can print them as well as hand them to :mod:`udalib.viz`.

Shapes: labels and predictions are (H, W) train ids with 255 = void; probabilities (B, K, H, W) over K classes;
pixel features (N, A) with A channels (the model's ``SegOutput.features``); per-class results (K,) or (K, A),
NaN for a class that never occurs. Example::

    from udalib import analysis, viz
    freqs = {d: analysis.class_pixel_frequencies(ds, protocol.num_classes) for d, ds in datasets.items()}
    pix_s = analysis.collect_pixels(model, source_loader, n_images=16)     # features, labels, predictions
    sim = analysis.cosine_similarity_matrix(analysis.class_means(pix_s, protocol.num_classes))   # (K, K)
    ent = analysis.entropy_maps(analysis.predict(model, images))           # (B, H, W) in [0, 1]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .data.labels import IGNORE_INDEX
from .inference import level_maps


def as_numpy_label(label: Tensor | np.ndarray) -> np.ndarray:
    """A label or prediction map (tensor or array-like) as a numpy array of the same shape."""
    return label.detach().cpu().numpy() if isinstance(label, Tensor) else np.asarray(label)


# ----------------------------------------------------------------------------------------------------------------
# Datasets: class frequencies, the sky line


def class_pixel_frequencies(dataset, num_classes: int, n: int | None = None) -> np.ndarray:
    """(K,) fraction of labelled pixels of each class over the first `n` items of `dataset` (void excluded)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for i in range(min(n or len(dataset), len(dataset))):
        label = as_numpy_label(dataset[i][1]).reshape(-1)
        label = label[label < num_classes]
        counts += np.bincount(label, minlength=num_classes)
    return counts / max(counts.sum(), 1)


def top_row(label: Tensor | np.ndarray, class_id: int) -> float:
    """Topmost row holding `class_id`, as a fraction of the image height from the top (NaN if absent).

    For the road this is where the street ends, just below the horizon: a camera that sees the street from
    another height or pitch moves it up or down the image.
    """
    rows = np.flatnonzero((as_numpy_label(label) == class_id).any(axis=1))
    return float(rows[0] / np.shape(label)[0]) if rows.size else float("nan")


# ----------------------------------------------------------------------------------------------------------------
# A model's outputs: probabilities, pixel features


@torch.no_grad()
def predict(
    model: nn.Module, images: Tensor, size: tuple[int, int] | None = None, device: str | torch.device = "cpu"
) -> Tensor:
    """Softmax probabilities (B, K, H, W) of the main head, upsampled to `size` (default: the input size)."""
    from .inference import predict_logits

    was = model.training
    model.eval()
    try:
        logits = predict_logits(model.to(device), images.to(device), size or tuple(images.shape[-2:]))
    finally:
        model.train(was)
    return torch.softmax(logits, dim=1).cpu()


@dataclass
class PixelSample:
    """Pixels of some images at the model's output stride: features (N, A), labels and predictions (N,)."""

    features: np.ndarray
    labels: np.ndarray
    preds: np.ndarray


@torch.no_grad()
def collect_pixels(
    model: nn.Module,
    loader: Iterable,
    n_images: int = 16,
    device: str | torch.device = "cpu",
    per_image: int = 256,
    seed: int = 0,
) -> PixelSample:
    """Run `model` on the first `n_images` of `loader` and keep up to `per_image` labelled pixels of each.

    Features are the model's ``SegOutput.features`` (the backbone output feature-level losses act on);
    ground truth is nearest-downsampled to their resolution (void dropped); predictions are the argmax there.
    """
    from .losses.contrastive import downsample_labels

    rng = np.random.default_rng(seed)
    feats, labs, preds, seen = [], [], [], 0
    was = model.training
    model.eval()
    model.to(device)
    try:
        for batch in loader:
            images, labels = batch[0], batch[1]
            out = model(images.to(device))
            f = out.features.float().cpu()  # (B, A, h, w)
            y = downsample_labels(labels, f.shape[-2:])  # (B, h, w)
            p = out.logits.argmax(1).cpu()  # (B, h, w)
            for b in range(f.shape[0]):
                if seen >= n_images:
                    break
                fb = f[b].flatten(1).t().numpy()  # (h*w, A)
                yb, pb = y[b].reshape(-1).numpy(), p[b].reshape(-1).numpy()
                keep = np.flatnonzero(yb != IGNORE_INDEX)
                keep = rng.choice(keep, size=min(per_image, keep.size), replace=False)
                feats.append(fb[keep])
                labs.append(yb[keep])
                preds.append(pb[keep])
                seen += 1
            if seen >= n_images:
                break
    finally:
        model.train(was)
    return PixelSample(np.concatenate(feats), np.concatenate(labs), np.concatenate(preds))


# ----------------------------------------------------------------------------------------------------------------
# Features: t-SNE, class-mean similarities


def tsne_embed(
    samples: Mapping[str, PixelSample], max_points: int = 1500, seed: int = 0, max_iter: int = 500
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D t-SNE of pixels from several domains: (points (N, 2), labels (N,), domain index (N,)).

    Each domain contributes an equal share of at most `max_points` (random, fixed seed); features are
    L2-normalised first so the picture reflects directions, as the cosine-based losses do. 500 iterations (half
    of sklearn's default) keep it to seconds on a laptop CPU; the clusters are settled by then at this size.
    """
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    share = max_points // len(samples)
    xs, ys, ds = [], [], []
    for d, s in enumerate(samples.values()):
        idx = rng.choice(len(s.labels), size=min(share, len(s.labels)), replace=False)
        xs.append(s.features[idx])
        ys.append(s.labels[idx])
        ds.append(np.full(idx.size, d))
    x = np.concatenate(xs).astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
    emb = TSNE(n_components=2, perplexity=30, init="pca", random_state=seed, max_iter=max_iter).fit_transform(x)
    return emb, np.concatenate(ys), np.concatenate(ds)


def class_means(sample: PixelSample, num_classes: int, by: str = "labels") -> np.ndarray:
    """(K, A) mean feature of the pixels of each class (by ground truth or by prediction); NaN rows if absent."""
    cls = getattr(sample, by)
    means = np.full((num_classes, sample.features.shape[1]), np.nan)
    for c in np.unique(cls):
        if c < num_classes:
            means[c] = sample.features[cls == c].mean(0)
    return means


def cosine_similarity_matrix(a: Tensor | np.ndarray, b: Tensor | np.ndarray | None = None) -> np.ndarray:
    """(K, K') cosine similarity between the rows of `a` (K, A) and of `b` (K', A) (default: `a` itself).

    Rows that are zero (a class never seen) or NaN give NaN entries.
    """

    def unit(m):
        m = np.asarray(m.detach().cpu() if isinstance(m, Tensor) else m, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return m / np.linalg.norm(m, axis=1, keepdims=True)

    ua = unit(a)
    ub = ua if b is None else unit(b)
    return ua @ ub.T


def knn_domain_accuracy(
    samples: Mapping[str, PixelSample], k: int = 10, max_points: int = 2000, seed: int = 0
) -> float:
    """How separable the domains are in feature space: the leave-one-out accuracy of a k-nearest-neighbour vote
    (cosine) that guesses each pixel's domain from its neighbours, on an equal share of each domain's pixels.
    1/len(samples) (0.5 for two) when the domains are mixed, 1 when they are apart. A measured number instead of
    eyeballing a t-SNE."""
    rng = np.random.default_rng(seed)
    share = max_points // len(samples)
    xs, ds = [], []
    for d, s in enumerate(samples.values()):
        idx = rng.choice(len(s.labels), size=min(share, len(s.labels)), replace=False)
        xs.append(s.features[idx])
        ds.append(np.full(idx.size, d))
    x, dom = np.concatenate(xs).astype(np.float64), np.concatenate(ds)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)  # leave each point out of its own vote
    neighbours = np.argpartition(-sim, k, axis=1)[:, :k]  # (N, k)
    votes = np.stack([(dom[neighbours] == d).sum(1) for d in range(len(samples))], axis=1)
    return float((votes.argmax(1) == dom).mean())


def class_mean_distances(source: PixelSample, target: PixelSample, num_classes: int) -> dict[str, float]:
    """Cosine distances of the ground-truth class means: "same class" (source vs target mean of each class, averaged
    over the classes both have) and "other classes" (between different classes, pooled over both domains). Aligned
    and separated embeddings have a small first and a large second."""
    ms, mt = class_means(source, num_classes), class_means(target, num_classes)
    both = ~np.isnan(ms).any(1) & ~np.isnan(mt).any(1)
    same = 1 - np.diag(cosine_similarity_matrix(ms[both], mt[both]))
    pooled = cosine_similarity_matrix((ms[both] + mt[both]) / 2)
    other = 1 - pooled[~np.eye(both.sum(), dtype=bool)]
    return {"same class": float(same.mean()), "other classes": float(other.mean())}


def alignment_report(pixels: Mapping[str, Mapping[str, PixelSample]], num_classes: int, seed: int = 0) -> str:
    """One line per model of `pixels` ({model: {"source": ..., "target": ...}}, as ``Chapter.pixels`` gives):
    its kNN domain accuracy (:func:`knn_domain_accuracy`) and class-mean cosine distances
    (:func:`class_mean_distances`), the two numbers the feature-space pictures are read with."""
    lines = []
    for name, p in pixels.items():
        dist = class_mean_distances(p["source"], p["target"], num_classes)
        lines.append(
            f"{name:14} kNN domain accuracy {knn_domain_accuracy(p, seed=seed):.3f} | class-mean cosine distance: "
            f"same class {dist['same class']:.3f}, other classes {dist['other classes']:.3f}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Entropy (ADVENT)


def entropy_maps(probs: Tensor) -> np.ndarray:
    """(B, H, W) normalised entropy in [0, 1] of (B, K, H, W) probabilities (``udalib.losses.entropy``)."""
    from .losses.entropy import entropy_map

    return entropy_map(probs).cpu().numpy()


def class_mean_entropy(ent: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K,) mean entropy of the pixels of each ground-truth class (NaN for an absent class)."""
    labels = np.asarray(labels).reshape(-1)
    ent = np.asarray(ent).reshape(-1)
    valid = labels < num_classes
    s = np.bincount(labels[valid], weights=ent[valid], minlength=num_classes)
    n = np.bincount(labels[valid], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s / n


# ----------------------------------------------------------------------------------------------------------------
# The output-space discriminators (AdaptSegNet, AdvEnt, global-local)


@torch.no_grad()
def discriminator_maps(
    model: nn.Module,
    nets: Mapping[str, nn.Module],
    images: Tensor,
    map_fn,
    device: torch.device | str = "cpu",
) -> dict[str, np.ndarray]:
    """Where each output level's discriminator believes it sees the target: ``{level: (B, H, W)}`` of
    sigmoid(D_l(M(P^l))) at the input size (a patch discriminator's coarse map upsampled, nearest).

    `nets`: the trained discriminators by level (``method.disc.nets``, ``method.local.nets``); `map_fn`: the map
    they were trained on (``method.discriminator_input``: the softmax or the self-information). The seeds' labels:
    source = 0, target = 1. Example::

        maps = discriminator_maps(model, result.method.disc.nets, ex.images, result.method.discriminator_input)
    """
    model.eval()
    size = tuple(images.shape[-2:])
    maps = level_maps(model(images.to(device)), size, map_fn)
    out = {}
    for level, net in nets.items():
        d = torch.sigmoid(net.eval()(maps[level]).float())  # (B, 1, h, w), h = H / 32 for a patch D
        out[level] = torch.nn.functional.interpolate(d, size=size, mode="nearest")[:, 0].cpu().numpy()
    return out


# ----------------------------------------------------------------------------------------------------------------
# SDCA's temperature


def temperature_sweep(
    sample: PixelSample, mean: Tensor, var: Tensor, taus: Iterable[float], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """SDCA's contrastive bound (shipped normalisation) of `sample`'s labelled pixels against class Gaussians
    (`mean`, `var`: (K, A)) at each temperature: the loss (T,) and its mean over each class's pixels (T, K),
    NaN for a class without pixels. As tau grows every bound logit tends to 0 and the loss to log K."""
    from .losses.contrastive import contrastive_bound

    features = torch.from_numpy(np.asarray(sample.features, dtype=np.float64))
    labels = torch.from_numpy(np.asarray(sample.labels, dtype=np.int64))
    labels = torch.where(labels < num_classes, labels, IGNORE_INDEX)
    present = [c for c in range(num_classes) if (labels == c).any()]
    losses, per_class = [], []
    for tau in taus:
        losses.append(contrastive_bound(features, labels, mean, var, tau=tau).item())
        row = np.full(num_classes, np.nan)
        for c in present:  # the same bound with every other class's pixels left out
            only = torch.where(labels == c, labels, IGNORE_INDEX)
            row[c] = contrastive_bound(features, only, mean, var, tau=tau).item()
        per_class.append(row)
    return np.array(losses), np.stack(per_class)


__all__ = [
    "PixelSample",
    "alignment_report",
    "as_numpy_label",
    "class_mean_entropy",
    "class_means",
    "class_pixel_frequencies",
    "collect_pixels",
    "cosine_similarity_matrix",
    "discriminator_maps",
    "entropy_maps",
    "predict",
    "temperature_sweep",
    "top_row",
    "tsne_embed",
]
