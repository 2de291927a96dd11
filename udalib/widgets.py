"""Sliders over precomputed frames: interactive figures that keep working without a kernel.

A chapter computes every frame up front (one figure per image, per temperature, per threshold...) and
:func:`frame_slider` stacks them behind a slider. The slider is tied to the stack by a *browser-side* link
(``ipywidgets.jslink``), not by a Python callback, so the figure changes in JupyterLab and equally in the built
book, where no kernel runs but the executed notebook's widget state (which nbclient and nbval store by default)
is embedded in the page. The live, recomputing counterpart for a running kernel is :func:`shift_explorer`.

Example::

    frames = [viz.plot_entropy_maps([ex.rgb[i]], {"source-only": ent[i : i + 1]}) for i in range(4)]
    frame_slider(frames, [f"image {i}" for i in range(4)], description="image")   # the cell's value
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .data.labels import CITYSCAPES19, Protocol
from .viz import plot_scenes

Frame = Figure | np.ndarray  # a figure, or an (H, W, 3) uint8 RGB image


def frame_png(frame: Frame, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib figure (drawn at `dpi`, then closed) or of an (H, W, 3) uint8 RGB array."""
    if isinstance(frame, Figure):
        buffer = io.BytesIO()
        frame.savefig(buffer, format="png", dpi=dpi)
        plt.close(frame)  # a pyplot-managed figure would otherwise also show at the end of the cell
        return buffer.getvalue()
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"frames: expected a Figure or an (H, W, 3) uint8 array, got {array.dtype} {array.shape}")
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="png")
    return buffer.getvalue()


def frame_slider(
    frames: Sequence[Frame], labels: Sequence[str], description: str = "frame", dpi: int = 80
) -> widgets.VBox:
    """A slider over `frames`, each shown with its caption from `labels`; switching needs no kernel.

    Each frame becomes a ``widgets.Image`` (PNG) in a ``widgets.Stack``, each label an ``HTML`` caption in a
    second stack; an ``IntSlider`` over 0..n-1 drives both stacks' ``selected_index`` through ``jslink``.

    Args:
        frames: n figures (rendered at `dpi`, then closed) or (H, W, 3) uint8 RGB arrays.
        labels: n captions, one per frame (e.g. ``"tau = 0.1: loss - log K = -0.42"``).
        description: the slider's name (e.g. ``"image"``, ``"tau"``).
        dpi: resolution at which figures are rendered.

    Returns:
        ``VBox([slider, caption stack, image stack])``; display it as a cell's value.

    Example::

        box = frame_slider([rgb_a, rgb_b], ["before", "after"], description="model")
        box.children[0].value = 1  # what moving the slider does, also from Python
    """
    frames, labels = list(frames), [str(label) for label in labels]
    if not frames:
        raise ValueError("frames: expected at least one frame, got none")
    if len(frames) != len(labels):
        raise ValueError(f"frames and labels: expected one label per frame, got {len(frames)} and {len(labels)}")
    images = [widgets.Image(value=frame_png(f, dpi), format="png") for f in frames]
    captions = [widgets.HTML(value=f"<b>{description}</b>: {label}") for label in labels]
    stack = widgets.Stack(images, selected_index=0)
    caption_stack = widgets.Stack(captions, selected_index=0)
    slider = widgets.IntSlider(
        value=0, min=0, max=len(frames) - 1, step=1, description=description, readout=False, continuous_update=True
    )
    # Browser-side links: the page switches frames with the kernel gone, from the embedded widget state.
    widgets.jslink((slider, "value"), (stack, "selected_index"))
    widgets.jslink((slider, "value"), (caption_stack, "selected_index"))
    return widgets.VBox([slider, caption_stack, stack])


__all__ = ["frame_png", "frame_slider"]


def shift_explorer(
    render: Callable[[dict[str, float], int], list], knobs: Sequence[str], protocol: Protocol = CITYSCAPES19
) -> widgets.VBox:
    """Live in a kernel: one slider per shift knob (strength 0-2) and a scene index; `render(strengths, index)`
    returns the scenes (see :func:`udalib.viz.plot_scenes`) drawn into one ``Image``, redrawn on every change.

    The redraw is a kernel-side callback, so without a kernel (the built book) the page shows the default scene and
    a :func:`frame_slider` of precomputed strengths stands in. The image is set directly rather than captured by an
    ``Output`` widget: nbclient, which executes the book's pages, cannot run an ``Output`` widget's captured
    display headless (it stalls, or fails without stored widget state)."""
    sliders = {
        k: widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.25, description=k, continuous_update=False)
        for k in knobs
    }
    index = widgets.IntSlider(value=0, min=0, max=199, description="scene", continuous_update=False)
    image = widgets.Image(format="png")

    def draw(_change: object = None) -> None:
        strengths = {k: s.value for k, s in sliders.items()}
        image.value = frame_png(plot_scenes(render(strengths, index.value), protocol))

    for control in (*sliders.values(), index):
        control.observe(draw, names="value")
    draw()
    return widgets.VBox([*sliders.values(), index, image])
