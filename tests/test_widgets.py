"""frame_slider: one image and one caption per frame, switched by a browser-side link that the saved widget state
carries (so the built book's page works without a kernel)."""

from __future__ import annotations

import io

import numpy as np
import pytest

widgets = pytest.importorskip("ipywidgets")
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from udalib.widgets import frame_png, frame_slider  # noqa: E402


def _figure(value: float) -> Figure:
    fig = Figure(figsize=(3, 2))  # 240 x 160 pixels at dpi 80
    fig.subplots().plot([0, 1], [0, value])
    return fig


@pytest.fixture
def box():
    frames = [_figure(v) for v in (0.0, 1.0, 2.0)] + [np.full((7, 11, 3), 200, dtype=np.uint8)]
    return frame_slider(frames, ["zero", "one", "two", "grey"], description="tau", dpi=80)


def _links_from(slider) -> list[dict]:
    """The states of the Link models whose source is `slider`, as the saved widget state holds them."""
    state = widgets.Widget.get_manager_state(drop_defaults=False)["state"]
    return [
        s["state"]
        for s in state.values()
        if s["state"]["_model_name"] == "LinkModel" and s["state"]["source"][0] == "IPY_MODEL_" + slider.model_id
    ]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.size  # (width, height)


def test_slider_spans_the_frames(box):
    slider, captions, stack = box.children
    assert isinstance(slider, widgets.IntSlider) and slider.description == "tau"
    assert (slider.min, slider.max, slider.value) == (0, 3, 0)
    assert len(stack.children) == len(captions.children) == slider.max - slider.min + 1 == 4
    assert stack.selected_index == captions.selected_index == 0


def test_images_are_pngs_of_the_expected_size(box):
    stack = box.children[2]
    sizes = [_png_size(im.value) for im in stack.children]
    assert all(im.format == "png" for im in stack.children)
    assert sizes == [(240, 160)] * 3 + [(11, 7)]
    assert len({im.value for im in stack.children[:3]}) == 3, "different figures give different frames"


def test_captions_match_the_labels(box):
    captions = [c.value for c in box.children[1].children]
    assert captions == ["<b>tau</b>: zero", "<b>tau</b>: one", "<b>tau</b>: two", "<b>tau</b>: grey"]


def test_the_slider_drives_both_stacks_in_the_browser(box):
    slider, captions, stack = box.children
    links = _links_from(slider)
    assert len(links) == 2
    assert {(link["source"][1], link["target"][1]) for link in links} == {("value", "selected_index")}
    assert {link["target"][0] for link in links} == {"IPY_MODEL_" + w.model_id for w in (stack, captions)}
    assert links[0]["_model_module"] == "@jupyter-widgets/controls"  # jslink: runs in the browser, not the kernel


def test_the_widget_state_holds_slider_stacks_and_links(box):
    slider, captions, stack = box.children
    state = widgets.Widget.get_manager_state(drop_defaults=False)["state"]
    for w in (box, slider, captions, stack, *stack.children, *captions.children):
        assert w.model_id in state, f"{type(w).__name__} missing from the widget state"
    assert len(_links_from(slider)) == 2
    assert state[stack.model_id]["state"]["children"] == ["IPY_MODEL_" + im.model_id for im in stack.children]
    from ipywidgets.embed import dependency_state

    embedded = dependency_state(box, drop_defaults=True)
    assert {slider.model_id, stack.model_id, captions.model_id} <= set(embedded)


def test_figures_are_closed_after_rendering():
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    frame_slider([fig], ["only"])
    assert not plt.fignum_exists(fig.number)


def test_an_array_frame_round_trips():
    rgb = np.zeros((5, 6, 3), dtype=np.uint8)
    rgb[2, 3] = (255, 0, 10)
    with Image.open(io.BytesIO(frame_png(rgb))) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), rgb)


@pytest.mark.parametrize(
    ("frames", "labels", "message"),
    [
        ([np.zeros((2, 2, 3), np.uint8)] * 2, ["a"], "frames and labels: .* got 2 and 1"),
        ([], [], "frames: expected at least one frame"),
        ([np.zeros((2, 2), np.uint8)], ["a"], r"frames: expected a Figure or an \(H, W, 3\) uint8 array"),
        ([np.zeros((2, 2, 3), np.float32)], ["a"], "frames: .* float32"),
    ],
)
def test_bad_input_names_the_parameter(frames, labels, message):
    with pytest.raises(ValueError, match=message):
        frame_slider(frames, labels)


def test_the_shift_explorer_redraws_its_image_when_a_knob_moves():
    from udalib.widgets import shift_explorer

    calls = []

    def render(strengths: dict[str, float], index: int) -> list:
        calls.append((strengths, index))
        shade = np.uint8(100 * strengths["texture"])
        return [("scene", np.full((8, 16, 3), shade, np.uint8), np.zeros((8, 16), np.uint8))]

    box = shift_explorer(render, ("appearance", "texture"))
    *sliders, index, image = box.children
    assert [s.description for s in sliders] == ["appearance", "texture"] and index.max == 199
    assert calls == [({"appearance": 1.0, "texture": 1.0}, 0)]  # drawn once at the default strengths
    first = image.value
    sliders[1].value = 2.0
    index.value = 3
    assert calls[1:] == [({"appearance": 1.0, "texture": 2.0}, 0), ({"appearance": 1.0, "texture": 2.0}, 3)]
    assert bytes(image.value) != bytes(first) and bytes(image.value).startswith(b"\x89PNG")
