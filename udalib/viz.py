"""The book's pictures: every chapter draws with these functions, and the library's losses never plot.

Each plotting function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (so a notebook shows it
once, as the cell's value, and scripts can ``fig.savefig(...)`` it); :func:`to_rgb` and :func:`overlay` return
(H, W, 3) uint8 RGB arrays to show. What is plotted is computed elsewhere: class frequencies, the sky line, a
model's probabilities and pixel features, entropy maps and class-mean similarities by :mod:`udalib.analysis`, the
measured and published results by :mod:`udalib.results`.

Conventions: images are (H, W, 3) uint8 RGB (``udalib.data.transforms.denormalize`` turns a network input back into
one); labels and predictions are (H, W) train ids with 255 = void, coloured with ``udalib.data.labels.colorize``
(void is black). Example::

    from udalib import analysis, viz
    src, tgt = domain_samples(cfg, n=3)
    viz.show_samples(src, tgt, protocol, cfg.data.normalization)            # image | label | overlay
    pix_s = analysis.collect_pixels(model, source_loader, n_images=16)     # features, labels, predictions
    pix_t = analysis.collect_pixels(model, target_loader, n_images=16)
    viz.plot_tsne({"source": pix_s, "target": pix_t}, protocol)           # by class and by domain
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from .analysis import PixelSample, as_numpy_label, tsne_embed
from .data.labels import CITYSCAPES19, IGNORE_INDEX, Protocol, colorize
from .data.transforms import denormalize

DOMAIN_COLOURS = {"source": "#1f77b4", "target": "#d62728"}  # also used for "before"/"after" pairs


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def to_rgb(image: Tensor | np.ndarray, normalization: str) -> np.ndarray:
    """A network input (3, H, W) tensor → (H, W, 3) uint8 RGB; uint8 arrays pass through."""
    if isinstance(image, np.ndarray):
        return image
    return denormalize(image, normalization)


def overlay(image: np.ndarray, label: np.ndarray, protocol: Protocol = CITYSCAPES19, alpha: float = 0.5) -> np.ndarray:
    """Blend the colourised label over the image; void pixels keep the image."""
    if image.shape[:2] != label.shape:
        image = np.asarray(_resize_rgb(image, label.shape))
    colour = colorize(label, protocol).astype(np.float32)
    out = image.astype(np.float32)
    mask = label != IGNORE_INDEX
    out[mask] = (1 - alpha) * out[mask] + alpha * colour[mask]
    return out.round().astype(np.uint8)


def _resize_rgb(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.Resampling.BICUBIC))


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def class_legend(
    fig: Figure, protocol: Protocol = CITYSCAPES19, present: Iterable[int] | None = None, ncol: int = 10
) -> None:
    """Add a colour legend of the classes (those in `present`, or all) below the figure."""
    from matplotlib.patches import Patch

    ids = sorted(set(present)) if present is not None else range(protocol.num_classes)
    handles = [
        Patch(color=protocol.palette[i] / 255, label=protocol.classes[i]) for i in ids if i < protocol.num_classes
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=7, frameon=False)


def show_source(*objects) -> object:
    """The source code of functions or classes as a highlighted Markdown block (what the chapters show instead
    of redefining the library). Returns an ``IPython.display.Markdown`` object."""
    import inspect
    import textwrap

    from IPython.display import Markdown

    blocks = [textwrap.dedent(inspect.getsource(o)).rstrip() for o in objects]
    return Markdown("```python\n" + "\n\n".join(blocks) + "\n```")


# ----------------------------------------------------------------------------------------------------------------
# The data chapter: samples, class frequencies, colour statistics, camera height


def show_samples(
    source: Sequence,
    target: Sequence,
    protocol: Protocol = CITYSCAPES19,
    normalization: str = "imagenet_rgb",
    alpha: float = 0.5,
) -> Figure:
    """Rows of image | colourised label | overlay, source samples first, then target samples.

    `source`, `target`: sequences of dataset items ``(image, label, meta)`` (image as network input or uint8 RGB).
    """
    rows = [("source", s) for s in source] + [("target", t) for t in target]
    fig = _figure(9, 1.6 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    present: set[int] = set()
    for r, (domain, item) in enumerate(rows):
        image, label = to_rgb(item[0], normalization), as_numpy_label(item[1])
        present |= set(np.unique(label).tolist())
        for c, (pic, name) in enumerate(
            [
                (image, "image"),
                (colorize(label, protocol), "label"),
                (overlay(image, label, protocol, alpha), "overlay"),
            ]
        ):
            axes[r, c].imshow(pic, interpolation="nearest")
            _off(axes[r, c])
            if r == 0 or rows[r - 1][0] != domain:
                axes[r, c].set_title(f"{domain}: {name}", fontsize=9)
        axes[r, 0].set_ylabel(domain, color=DOMAIN_COLOURS[domain])
    class_legend(fig, protocol, present - {IGNORE_INDEX})
    return fig


def _class_bars(
    series: Mapping[str, np.ndarray], classes: Sequence[str], size: tuple[float, float], legend: str | None = None
) -> tuple[Figure, Any]:
    """One group of bars per class, one bar per series (NaN drawn as 0), coloured by domain where the series is
    named after one; `legend` formats each series' mean into its label (e.g. ``"mIoU {:.1f}"``)."""
    fig = _figure(*size)
    ax = fig.subplots()
    x = np.arange(len(classes))
    width = 0.8 / len(series)
    for i, (name, v) in enumerate(series.items()):
        v = np.asarray(v, dtype=float)
        label = name if legend is None else f"{name} ({legend.format(np.nanmean(v))})"
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar(x + offset, np.nan_to_num(v), width, label=label, color=DOMAIN_COLOURS.get(name))
    ax.set_xticks(x, classes, rotation=60, ha="right", fontsize=8)
    return fig, ax


def plot_scenes(scenes: Sequence[tuple[str, np.ndarray, np.ndarray]], protocol: Protocol = CITYSCAPES19) -> Figure:
    """Two columns per scene, image | colourised label, two scenes per row; `scenes`: (title, uint8 (H, W, 3)
    image, (H, W) train-id label)."""
    n_rows = (len(scenes) + 1) // 2
    fig = _figure(10, 1.45 * n_rows + 0.6)
    axes = fig.subplots(n_rows, 4, squeeze=False)
    present: set[int] = set()
    for i, (title, image, label) in enumerate(scenes):
        ax_img, ax_lbl = axes[i // 2, 2 * (i % 2)], axes[i // 2, 2 * (i % 2) + 1]
        ax_img.imshow(image, interpolation="nearest")
        ax_lbl.imshow(colorize(label, protocol), interpolation="nearest")
        ax_img.set_title(title, fontsize=9)
        present |= set(np.unique(label).tolist())
    for ax in axes.flat:
        _off(ax)
    for ax in axes.flat[2 * len(scenes) :]:
        ax.set_visible(False)
    class_legend(fig, protocol, present - {IGNORE_INDEX})
    return fig


def plot_shift_anatomy(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Source-only, AdaBN and oracle mIoU per pair (rows of :func:`udalib.results.tables.shift_anatomy`), with the share
    of the gap AdaBN recovers written beside each pair."""
    fig = _figure(9, 0.55 * len(rows) + 1.2)
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    bars = (("source_only", "source-only", "#1f77b4"), ("adabn", "AdaBN", "#ff7f0e"), ("oracle", "oracle", "#2ca02c"))
    for i, (key, label, colour) in enumerate(bars):
        ax.barh(y + (1 - i) * 0.27, [r[key] for r in rows], 0.27, label=label, color=colour)
    for yy, r in zip(y, rows, strict=True):
        share = "no gap to speak of" if r["recovered"] is None else f"AdaBN recovers {100 * r['recovered']:.0f}%"
        ax.text(r["oracle"] + 1, yy, f"{share} of {r['gap']:.1f}", va="center")
    ax.set_yticks(y, [r["pair"] for r in rows])
    ax.set_xlabel("target val mIoU")
    ax.set_xlim(0, 100)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("the anatomy of the gap")
    return fig


def plot_class_frequencies(freqs: Mapping[str, np.ndarray], classes: Sequence[str], log: bool = True) -> Figure:
    """Grouped bars of per-class pixel frequency, one colour per domain (log scale shows the rare classes)."""
    fig, ax = _class_bars({name: np.asarray(f) * 100 for name, f in freqs.items()}, classes, (10, 3.4))
    ax.set_ylabel("% of labelled pixels")
    if log:
        ax.set_yscale("log")
    ax.legend()
    ax.set_title("class frequencies")
    return fig


def plot_rgb_histograms(images: Mapping[str, Sequence[np.ndarray]], bins: int = 64) -> Figure:
    """Per-channel intensity histograms (R, G, B panels) of each domain's uint8 (H, W, 3) images."""
    fig = _figure(10, 2.8)
    axes = fig.subplots(1, 3, sharey=True)
    edges = np.linspace(0, 256, bins + 1)
    for name, imgs in images.items():
        stack = np.concatenate([np.asarray(im).reshape(-1, 3) for im in imgs])
        for ch, ax in enumerate(axes):
            hist, _ = np.histogram(stack[:, ch], bins=edges, density=True)
            ax.step(
                edges[:-1],
                hist,
                where="post",
                label=f"{name} (mean {stack[:, ch].mean():.0f})",
                color=DOMAIN_COLOURS.get(name),
            )
    for ch, ax in zip("RGB", axes):
        ax.set_title(f"{ch} channel")
        ax.set_xlabel("intensity")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("density")
    return fig


def plot_row_histograms(rows: Mapping[str, Sequence[float]], xlabel: str = "row (fraction of the height)") -> Figure:
    """Histogram of one per-image row position (e.g. :func:`udalib.analysis.top_row`) per domain, with each
    domain's mean."""
    fig = _figure(6, 2.8)
    ax = fig.subplots()
    for name, v in rows.items():
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        colour = DOMAIN_COLOURS.get(name)
        ax.hist(v, bins=25, range=(0, 1), alpha=0.6, label=f"{name}: mean {v.mean():.3f}", color=colour)
        ax.axvline(v.mean(), color=colour, lw=1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    ax.legend()
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Evaluation pictures: confusion matrices, per-class IoU, overlays


def plot_confusion(confusion: np.ndarray | Mapping[str, np.ndarray], classes: Sequence[str], title: str = "") -> Figure:
    """Row-normalised confusion matrix (rows: ground truth, columns: prediction); a mapping draws one per entry."""
    mats = confusion if isinstance(confusion, Mapping) else {title: confusion}
    fig = _figure(5.2 * len(mats), 5.0)
    axes = np.atleast_1d(fig.subplots(1, len(mats)))
    for ax, (name, mat) in zip(axes, mats.items()):
        mat = np.asarray(mat, dtype=float)
        norm = mat / np.maximum(mat.sum(1, keepdims=True), 1)
        im = ax.imshow(norm, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
        ax.set_title(name)
    fig.colorbar(im, ax=list(axes), shrink=0.7, label="fraction of the row")
    return fig


def plot_iou_bars(runs: Mapping[str, Mapping[str, float]], classes: Sequence[str] | None = None) -> Figure:
    """Grouped per-class IoU bars (%), one group per class and one bar per run; the legend gives each mIoU."""
    classes = list(classes or next(iter(runs.values())).keys())
    series = {name: [iou.get(c, np.nan) for c in classes] for name, iou in runs.items()}
    fig, ax = _class_bars(series, classes, (11, 3.4), legend="mIoU {:.1f}")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    return fig


def plot_predictions(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    preds: Mapping[str, Sequence[np.ndarray]],
    protocol: Protocol = CITYSCAPES19,
) -> Figure:
    """Rows of image | ground truth | one column per model's prediction (e.g. before / after adaptation)."""
    cols = ["image", "ground truth", *preds]
    fig = _figure(2.6 * len(cols), 1.45 * len(images) + 0.8)
    axes = fig.subplots(len(images), len(cols), squeeze=False)
    present: set[int] = set()
    for r, (img, lab) in enumerate(zip(images, labels)):
        lab = as_numpy_label(lab)
        pics = [img, colorize(lab, protocol)] + [colorize(as_numpy_label(p[r]), protocol) for p in preds.values()]
        present |= set(np.unique(lab).tolist())
        for c, pic in enumerate(pics):
            axes[r, c].imshow(pic, interpolation="nearest")
            _off(axes[r, c])
            if r == 0:
                axes[r, c].set_title(cols[c], fontsize=9)
    class_legend(fig, protocol, present - {IGNORE_INDEX})
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Features: t-SNE of pixel representations, class-mean similarities


def plot_tsne(
    samples: Mapping[str, PixelSample],
    protocol: Protocol = CITYSCAPES19,
    max_points: int = 1500,
    seed: int = 0,
    title: str = "",
) -> Figure:
    """Two panels of one t-SNE embedding (:func:`udalib.analysis.tsne_embed`) of pixel features: coloured by class,
    and by domain."""
    emb, labels, dom = tsne_embed(samples, max_points, seed)
    fig = _figure(10, 4.6)
    a, b = fig.subplots(1, 2)
    a.scatter(emb[:, 0], emb[:, 1], c=protocol.palette[labels] / 255, s=4, linewidths=0)
    a.set_title("coloured by class (ground truth)", fontsize=9)
    names = list(samples)
    for d, name in enumerate(names):
        m = dom == d
        b.scatter(
            emb[m, 0], emb[m, 1], s=4, linewidths=0, alpha=0.6, label=name, color=DOMAIN_COLOURS.get(name, f"C{d}")
        )
    b.legend(markerscale=4)
    b.set_title("coloured by domain", fontsize=9)
    for ax in (a, b):
        _off(ax)
    if title:
        fig.suptitle(title)
    class_legend(fig, protocol, np.unique(labels))
    return fig


def _peak_scaled(prototypes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, A) prototypes each divided by its peak channel, as the sparsity loss sees them, and (K,) whether a class
    has a positive peak (rows without one are left as they are)."""
    peak = prototypes.max(1, keepdims=True)
    seen = peak[:, 0] > 0
    return prototypes / np.where(peak > 0, peak, 1.0), seen


def plot_prototype_channels(prototypes: Mapping[str, np.ndarray], classes: Sequence[str]) -> Figure:
    """One heatmap per entry: class prototypes (K, A) with each row divided by its maximum channel (what the
    sparsity loss sees), channels sorted by their mean so that shared channels gather on the left."""
    fig = _figure(5 * len(prototypes), 4)
    axes = np.atleast_1d(fig.subplots(1, len(prototypes)))
    for ax, (name, p) in zip(axes, prototypes.items(), strict=True):
        p = np.nan_to_num(np.asarray(p, dtype=float))
        scaled, _ = _peak_scaled(p)
        im = ax.imshow(scaled[:, np.argsort(-scaled.mean(0))], aspect="auto", cmap="magma", vmin=0, vmax=1)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_xlabel("channel (sorted by mean)")
        active = (scaled > 0.5).sum(1)[p.max(1) > 0]
        ax.set_title(f"{name}: {active.mean():.0f} channels above half the peak", fontsize=9)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="channel / class maximum")
    return fig


def plot_instances(images: Sequence[np.ndarray], instances: Sequence[np.ndarray], titles: Sequence[str]) -> Figure:
    """Rows of image | its instances, each (n, h, w) mask set drawn in its own colour (upsampled to the image)."""
    from matplotlib import colormaps

    fig = _figure(8, 1.9 * len(images) + 0.4)
    axes = fig.subplots(len(images), 2, squeeze=False)
    colours = colormaps["tab20"](np.arange(20))[:, :3]
    for r, (img, masks, title) in enumerate(zip(images, instances, titles, strict=True)):
        h, w = img.shape[:2]
        canvas = np.zeros((h, w, 3))
        for i, m in enumerate(np.asarray(masks, dtype=bool)):
            big = np.kron(m, np.ones((h // m.shape[0], w // m.shape[1]), dtype=bool))[:h, :w]
            canvas[big] = colours[i % 20]
        axes[r, 0].imshow(img)
        axes[r, 1].imshow(canvas)
        axes[r, 1].set_title(title, fontsize=9)
        for ax in axes[r]:
            _off(ax)
    return fig


def plot_similarity(mats: Mapping[str, np.ndarray], classes: Sequence[str], vmin: float | None = None) -> Figure:
    """Side-by-side class-by-class similarity matrices (e.g. class means before and after adaptation)."""
    fig = _figure(5.2 * len(mats), 5.0)
    axes = np.atleast_1d(fig.subplots(1, len(mats)))
    lo = vmin if vmin is not None else min(np.nanmin(m) for m in mats.values())
    for ax, (name, mat) in zip(axes, mats.items()):
        im = ax.imshow(mat, vmin=lo, vmax=1, cmap="magma")
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        diag, off = np.diag(mat), mat[~np.eye(len(mat), dtype=bool)]
        ax.set_title(f"{name}\ndiagonal {np.nanmean(diag):.2f}, off-diagonal {np.nanmean(off):.2f}", fontsize=9)
    fig.colorbar(im, ax=list(axes), shrink=0.7, label="cosine similarity")
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Training: loss curves and the adversarial game


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in history if key in r]
    return np.array([r["step"] for r in rows]), np.array([r[key] for r in rows], dtype=float)


def plot_training_curves(
    history: Sequence[Mapping[str, float]], keys: Sequence[str] | None = None, ncols: int = 3
) -> Figure:
    """One small panel per logged quantity of ``TrainResult.history`` (default: every key but step and lr)."""
    keys = list(keys or sorted({k for r in history for k in r} - {"step", "lr"}))
    nrows = max(1, -(-len(keys) // ncols))
    fig = _figure(3.4 * min(ncols, len(keys)), 2.4 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, min(ncols, len(keys)), squeeze=False)).reshape(-1)
    for ax, key in zip(axes, keys):
        x, y = _series(history, key)
        ax.plot(x, y, marker=".", ms=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    return fig


def plot_discriminator_outputs(
    history: Sequence[Mapping[str, float]],
    levels: Sequence[str] = ("main", "aux"),
    prefix: str = "",
    title: str = "discriminator",
) -> Figure:
    """Mean sigmoid output of each discriminator on source and target maps over training.

    Reads the keys ``{prefix}d_{level}_src_out`` and ``{prefix}d_{level}_tgt_out`` that the output-space methods
    log (GlobalLocal's per-pixel discriminators use ``prefix="local_"``). Label convention of the seeds: source
    = 0, target = 1. A discriminator that wins keeps the curves apart (source near 0, target near 1); a
    segmenter that fools it pulls the target curve towards the source one.
    """
    levels = [lv for lv in levels if any(f"{prefix}d_{lv}_src_out" in r for r in history)]
    fig = _figure(5 * max(len(levels), 1), 3.0)
    axes = np.atleast_1d(fig.subplots(1, max(len(levels), 1)))
    for ax, lv in zip(axes, levels):
        for dom in ("src", "tgt"):
            x, y = _series(history, f"{prefix}d_{lv}_{dom}_out")
            name = "source" if dom == "src" else "target"
            ax.plot(x, y, label=f"D({name})", color=DOMAIN_COLOURS[name])
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1)
        ax.set_xlabel("iteration")
        ax.set_ylabel("mean sigmoid(D)\n0 = 'source', 1 = 'target'", fontsize=8)
        ax.set_title(f"{title} on {lv} output", fontsize=9)
        ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Entropy (ADVENT) and pseudo-labels (SDCA)


def plot_maps(
    images: Sequence[np.ndarray],
    maps: Mapping[str, np.ndarray],
    label: str = "",
    cmap: str = "inferno",
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> Figure:
    """Rows of image | one (B, H, W) map per entry of `maps` (each column titled with its mean)."""
    cols = ["image", *maps]
    fig = _figure(2.6 * len(cols), 1.45 * len(images) + 0.6)
    axes = fig.subplots(len(images), len(cols), squeeze=False)
    for r, img in enumerate(images):
        axes[r, 0].imshow(img)
        for c, m in enumerate(maps.values(), start=1):
            im = axes[r, c].imshow(m[r], vmin=vmin, vmax=vmax, cmap=cmap)
        for c in range(len(cols)):
            _off(axes[r, c])
            if r == 0:
                title = cols[c] if c == 0 else f"{cols[c]}\nmean {np.mean(list(maps.values())[c - 1]):.3f}"
                axes[r, c].set_title(title, fontsize=9)
    fig.colorbar(im, ax=axes[:, 1:].ravel().tolist(), shrink=0.8, label=label)
    return fig


def plot_entropy_maps(images: Sequence[np.ndarray], maps: Mapping[str, np.ndarray]) -> Figure:
    """Rows of image | one entropy map per model (:func:`udalib.analysis.entropy_maps`; 0 = certain, dark;
    1 = uniform, bright)."""
    return plot_maps(images, maps, label="normalised entropy", cmap="inferno")


def plot_class_values(values: Mapping[str, np.ndarray], classes: Sequence[str], ylabel: str) -> Figure:
    """Grouped bars of one per-class quantity for several models (e.g. mean entropy before and after)."""
    fig, ax = _class_bars(values, classes, (10, 3.2), legend="mean {:.3f}")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return fig


def plot_pseudo_labels(
    images: Sequence[np.ndarray],
    pseudo: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    thresholds: Sequence[float],
    protocol: Protocol = CITYSCAPES19,
) -> Figure:
    """Rows of image | pseudo-label (void = black: below its class's threshold) | ground truth, and a bar
    chart of the class-wise thresholds."""
    n = len(images)
    fig = _figure(9, 1.5 * n + 3.2)
    grid = fig.add_gridspec(n + 2, 3)
    present: set[int] = set()
    for r in range(n):
        pl, gt = as_numpy_label(pseudo[r]), as_numpy_label(labels[r])
        kept = (pl != IGNORE_INDEX).mean()
        present |= set(np.unique(gt).tolist())
        for c, (pic, name) in enumerate(
            [
                (images[r], "target image"),
                (colorize(pl, protocol), f"pseudo-label ({kept:.0%} kept)"),
                (colorize(gt, protocol), "ground truth (unused)"),
            ]
        ):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(pic, interpolation="nearest")
            _off(ax)
            ax.set_title(name, fontsize=8)
    ax = fig.add_subplot(grid[n:, :])
    thr = np.asarray(thresholds, dtype=float)
    ax.bar(range(len(thr)), thr, color=protocol.palette[: len(thr)] / 255, edgecolor="black", lw=0.3)
    ax.axhline(0.9, color="grey", ls="--", lw=0.8, label="cap 0.9")
    ax.set_xticks(range(len(thr)), protocol.classes[: len(thr)], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("threshold on max prob.")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return fig


def plot_class_heatmap(names: Sequence[str], classes: Sequence[str], table: Sequence[Sequence[float]]) -> Figure:
    """Per-class IoU (rows: `names`, columns: `classes`, values in percent) as a heatmap with the values written in
    (:func:`udalib.results.tables.per_class_means` gives the three arguments)."""
    values = np.asarray(table, dtype=float)
    fig = _figure(11, 0.45 * len(names) + 1.8)
    ax = fig.subplots()
    im = ax.imshow(values, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6, color="white" if v < 50 else "black")
    fig.colorbar(im, ax=ax, label="IoU (%)")
    return fig


def plot_ours_vs_published(rows: Sequence[Mapping[str, Any]], preset: str) -> Figure:
    """Our mean mIoU (error bar: std over seeds) beside the published GTA5→Cityscapes number, per method (rows of
    :func:`udalib.results.tables.results_rows` that are measured)."""
    fig = _figure(9, 3.4)
    ax = fig.subplots()
    x = np.arange(len(rows))
    std = [r["std"] if r["std"] is not None and np.isfinite(r["std"]) else 0.0 for r in rows]
    ax.bar(x - 0.2, [r["ours"] for r in rows], 0.4, yerr=std, label=f"ours ({preset})")
    ax.bar(x + 0.2, [np.nan if r["paper"] is None else r["paper"] for r in rows], 0.4, label="published")
    ax.set_xticks(x, [r["method"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mIoU (%)")
    ax.legend()
    return fig


def plot_knob_matrix(matrix: Mapping[str, Any]) -> Figure:
    """Which method closes which kind of shift: each row's gain over source-only on each knob's pair as a share of
    that pair's gap (colour) with the gain in mIoU written in (:func:`udalib.results.tables.knob_matrix`)."""
    knobs, rows = matrix["knobs"], list(matrix["gains"])
    share = np.array(
        [
            [np.nan if matrix["gains"][r][k] is None else matrix["gains"][r][k] / matrix["gap"][k] for k in knobs]
            for r in rows
        ]
    )
    fig = _figure(1.6 * len(knobs) + 3, 0.5 * len(rows) + 1.4)
    ax = fig.subplots()
    im = ax.imshow(100 * share, vmin=-100, vmax=100, cmap="RdBu", aspect="auto")
    ax.set_xticks(range(len(knobs)), [f"{k}\n(gap {matrix['gap'][k]:.1f})" for k in knobs], fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i, row in enumerate(rows):
        for j, knob in enumerate(knobs):
            gain = matrix["gains"][row][knob]
            ax.text(j, i, "not run" if gain is None else f"{gain:+.1f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="% of the knob's gap closed")
    ax.set_title("gain over source-only on the pair of each knob alone")
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Knobs of the losses, one frame per setting (for udalib.widgets.frame_slider)


def plot_temperature(
    taus: Sequence[float], losses: np.ndarray, per_class: np.ndarray, index: int, classes: Sequence[str]
) -> Figure:
    """SDCA's contrastive bound against the temperature (:func:`udalib.analysis.temperature_sweep`): the loss
    over every tau with ``taus[index]`` marked and log K drawn, and the loss of each class's pixels at that tau."""
    taus, losses, per_class = np.asarray(taus, dtype=float), np.asarray(losses), np.asarray(per_class)
    log_k = float(np.log(per_class.shape[1]))
    fig = _figure(10, 3.2)
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.6))
    left.plot(taus, losses, marker=".", color="#1f77b4", label="loss")
    left.axhline(log_k, color="grey", ls="--", lw=0.8, label="log K")
    left.plot(taus[index], losses[index], "o", color="#d62728", ms=8)
    left.set_xscale("log")
    left.set_yscale("log")  # the loss spans log K at a high tau and hundreds at a low one
    left.set_xlabel("temperature tau")
    left.set_ylabel("contrastive bound")
    left.legend(fontsize=8)
    left.set_title(f"tau = {taus[index]:g}: loss - log K = {losses[index] - log_k:+.3f}", fontsize=9)
    x = np.arange(len(classes))
    right.bar(x, np.nan_to_num(per_class[index] - log_k), color="#1f77b4")
    right.axhline(0, color="grey", lw=0.8)
    low, high = np.nanmin(per_class - log_k), np.nanmax(per_class - log_k)
    right.set_yscale("symlog", linthresh=1e-2)  # gaps of 1e-3 at a high tau and of 10 at a low one
    right.set_ylim(min(low, 0) * 1.2 - 1e-3, max(high, 0) * 1.2 + 1e-3)  # one scale for every tau
    right.set_xticks(x, classes, rotation=60, ha="right", fontsize=7)
    right.set_ylabel("loss - log K")
    right.set_title("per class (pixels of that class only)", fontsize=9)
    return fig


def plot_sparsity(prototypes: np.ndarray, rho: float, classes: Sequence[str], loss: float) -> Figure:
    """What the sparsity term does to class prototypes (K, A) at one rho: each prototype divided by its peak
    channel, the channels below rho pushed towards 0 and those above towards 1 (histogram), and per class the
    share of channels pushed up. `loss`: L_sp at this rho (:func:`udalib.losses.sparsity.prototype_sparsity`)."""
    scaled, seen = _peak_scaled(np.nan_to_num(np.asarray(prototypes, dtype=float)))
    scaled = scaled[seen]
    fig = _figure(10, 3.4)
    left, right = fig.subplots(1, 2)
    edges = np.linspace(0, 1, 41)
    left.hist(scaled[scaled < rho], bins=edges, color="#1f77b4", label="pushed towards 0")
    left.hist(scaled[scaled >= rho], bins=edges, color="#d62728", label="pushed towards 1")
    left.axvline(rho, color="black", lw=1)
    left.set_yscale("log")
    left.set_xlabel("channel / class maximum")
    left.set_ylabel("channels (all classes)")
    left.legend(fontsize=8)
    left.set_title(f"rho = {rho:g}: L_sp = {loss:.3f}", fontsize=9)
    up = (scaled >= rho).mean(1)
    names = [c for c, s in zip(classes, seen) if s]
    right.barh(np.arange(len(names))[::-1], up, color="#d62728")
    right.set_yticks(np.arange(len(names))[::-1], names, fontsize=7)
    right.set_xlim(0, 1)
    right.set_xlabel("share of channels pushed towards 1")
    right.set_title(f"{up.mean():.0%} of a prototype's channels kept, on average", fontsize=9)
    return fig


__all__ = [
    "class_legend",
    "overlay",
    "plot_class_heatmap",
    "plot_class_frequencies",
    "plot_class_values",
    "plot_confusion",
    "plot_discriminator_outputs",
    "plot_entropy_maps",
    "plot_iou_bars",
    "plot_knob_matrix",
    "plot_ours_vs_published",
    "plot_maps",
    "plot_predictions",
    "plot_pseudo_labels",
    "plot_rgb_histograms",
    "plot_row_histograms",
    "plot_similarity",
    "plot_sparsity",
    "plot_temperature",
    "plot_training_curves",
    "plot_tsne",
    "show_samples",
    "show_source",
    "to_rgb",
]
