"""Draw the introduction's figures from SynthCity scenes: ``python book/figures.py`` (about a minute on a CPU).

Writes into ``book/images/``:

- ``uda_setting.png``: the UDA setting, labelled source images and unlabelled target images into one segmenter,
  which has to segment the target;
- ``synthcity_samples.png``: two source and two target scenes, each with its label and the label blended over it;
- ``class_frequencies.png``: the share of labelled pixels per class in each domain (label shift).

The scenes are rendered directly by the generator (``udalib.data.synthcity.render_item``, a pure function of the
seed and the index), so the figures need no cache and change only when the generator does: rerun this script
after a change of ``synthcity.VERSION``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from udalib.data import synthcity
from udalib.data.labels import CITYSCAPES19

OUT = Path(__file__).resolve().parent / "images"
SPEC = synthcity.SynthCitySpec()  # the default pair at the generator's default size
FREQUENCY_IMAGES = 200  # images per domain for the class shares
DPI = 150


def colorize(label: np.ndarray) -> np.ndarray:
    """(H, W) train ids to (H, W, 3) uint8 Cityscapes colours; ignored pixels black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: CITYSCAPES19.num_classes] = CITYSCAPES19.palette
    return lut[label]


def blend(image: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The label's colours over the image (ignored pixels keep the image)."""
    out = image.astype(np.float32)
    mask = label != synthcity.VOID
    out[mask] = (1 - alpha) * out[mask] + alpha * colorize(label)[mask]
    return out.astype(np.uint8)


def scenes(domain: str, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `n` (image, label) pairs of source train or target val."""
    split = "train" if domain == "source" else "val"
    return [synthcity.render_item(SPEC, domain, split, i) for i in range(n)]


def _image(fig: Figure, rect: tuple[float, float, float, float], image: np.ndarray, title: str = "") -> None:
    ax = fig.add_axes(rect)
    ax.imshow(image)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def uda_setting() -> Figure:
    """Labelled source + unlabelled target → segmenter G → a segmentation of the target."""
    fig = Figure(figsize=(10, 5))
    src, tgt = scenes("source", 2), scenes("target", 2)
    w, h = 0.16, 0.16  # axes size in figure fractions: a 1:2 scene on a 10 × 5 inch figure
    fig.text(0.185, 0.95, "labelled source $(x_s, y_s)$", ha="center", fontsize=11, weight="bold")
    for i, (image, label) in enumerate(src):
        y = 0.74 - i * 0.18
        _image(fig, (0.02, y, w, h), image, "image" if i == 0 else "")
        _image(fig, (0.19, y, w, h), colorize(label), "label" if i == 0 else "")
    fig.text(0.185, 0.47, "unlabelled target $x_t$", ha="center", fontsize=11, weight="bold")
    for i, (image, _) in enumerate(tgt):
        _image(fig, (0.105, 0.27 - i * 0.18, w, h), image)

    fig.patches.append(
        FancyBboxPatch(
            (0.45, 0.4),
            0.13,
            0.2,
            boxstyle="round,pad=0.01",
            transform=fig.transFigure,
            facecolor="#e8eef8",
            edgecolor="#345",
        )
    )
    fig.text(0.515, 0.53, "segmenter $G$", ha="center", va="center", fontsize=11, weight="bold")
    fig.text(
        0.515,
        0.45,
        "$\\mathcal{L}_{seg}$ on source\n$+\\ \\lambda\\, \\mathcal{L}_{adapt}$",
        ha="center",
        va="center",
        fontsize=9,
    )
    for start, end in (((0.37, 0.7), (0.45, 0.55)), ((0.28, 0.27), (0.45, 0.45)), ((0.59, 0.5), (0.65, 0.5))):
        fig.patches.append(
            FancyArrowPatch(
                start, end, transform=fig.transFigure, arrowstyle="-|>", mutation_scale=14, color="#345", linewidth=1.5
            )
        )
    fig.text(0.825, 0.8, "goal: segment the target", ha="center", fontsize=11, weight="bold")
    for i, (image, label) in enumerate(tgt):
        y = 0.56 - i * 0.2
        _image(fig, (0.66, y, w, h), image, "target image" if i == 0 else "")
        _image(fig, (0.83, y, w, h), colorize(label), "its segmentation" if i == 0 else "")
    fig.text(0.825, 0.28, "(target labels are used only to score)", ha="center", fontsize=8)
    return fig


def samples() -> Figure:
    """Two source and two target scenes: image, label, label blended over the image."""
    rows = [("source", s) for s in scenes("source", 2)] + [("target", s) for s in scenes("target", 2)]
    fig = Figure(figsize=(9, 6.4), layout="constrained")
    axes = fig.subplots(len(rows), 3)
    for r, (domain, (image, label)) in enumerate(rows):
        for c, (panel, title) in enumerate(
            ((image, f"{domain} image"), (colorize(label), "label"), (blend(image, label), "blended"))
        ):
            axes[r, c].imshow(panel)
            axes[r, c].set_axis_off()
            axes[r, c].set_title(title, fontsize=8)
    return fig


def class_frequencies(n: int = FREQUENCY_IMAGES) -> Figure:
    """Share of labelled pixels per class in `n` images of each domain, log scale."""
    shares = {}
    for domain in ("source", "target"):
        split = "train" if domain == "source" else "val"
        count = min(n, SPEC.n_source if domain == "source" else SPEC.n_target_val)
        hist = np.zeros(CITYSCAPES19.num_classes)
        for i in range(count):
            label = synthcity.render_item(SPEC, domain, split, i)[1]
            hist += np.bincount(label[label != synthcity.VOID].ravel(), minlength=CITYSCAPES19.num_classes)
        shares[domain] = hist / hist.sum()
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.subplots()
    x = np.arange(CITYSCAPES19.num_classes)
    for k, (domain, share) in enumerate(shares.items()):
        ax.bar(x + (k - 0.5) * 0.4, np.maximum(share, 1e-6), 0.4, label=domain)
    ax.set_yscale("log")
    ax.set_xticks(x, CITYSCAPES19.classes, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("share of labelled pixels")
    ax.legend()
    return fig


FIGURES = {"uda_setting": uda_setting, "synthcity_samples": samples, "class_frequencies": class_frequencies}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[*FIGURES, []], help="default: every figure")
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    for name in args.names or FIGURES:
        path = OUT / f"{name}.png"
        FIGURES[name]().savefig(path, dpi=DPI)
        print(f"wrote {path.relative_to(OUT.parents[1])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
