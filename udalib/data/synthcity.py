"""SynthCity: an embedded, procedural source/target pair of street scenes (the book's laptop-scale GTA5→Cityscapes).

Both domains share one scene grammar: a camera looks down a straight street (road, sidewalks, terrain verges),
buildings, walls and fences line it, and objects of the other 14 Cityscapes classes stand on the ground plane in
perspective, drawn far-to-near so that near objects occlude far ones. Thin and small classes (poles, lights, signs,
people, riders) are drawn thicker and nearer than in a real city, so that a 64×128 input and 16×32 logits can see
them: a quick run must be able to learn every class.

What shifts between the domains is a set of **named knobs**, each with a strength (0: the target looks like the
source in that respect; 1: the default pair; up to 2: stronger). The target's style is the source's moved towards
the "real" style by each knob's strength, field by field:

==============  ===========================================  ===============================================
knob            source ("game", GTA5 layout)                  target ("real", Cityscapes layout) at strength 1
==============  ===========================================  ===============================================
appearance      saturated palette, bright, high contrast      per-class colour changes, desaturated, warmer,
                                                              darker, lower contrast, more colour variation
texture         flat surfaces, sharp, noiseless               material patterns (asphalt, brick, foliage,
                                                              clouds), blur, sensor noise
geometry        camera 2.2 m high, horizon high, scale 1      camera 1.1 m, horizon lower, objects 1.5× larger
priors          many vehicles, few people                     many people, riders, bicycles and trees
layout          wide roads, people on the kerb, cars on       narrow roads, people crossing, cars parked on the
                the road, low buildings                       sidewalk, tall buildings, wide verges
==============  ===========================================  ===============================================

The source is written as ``images/NNNNN.png`` + ``labels/NNNNN.png`` (GTA5), the target as
``leftImg8bit/{train,val}/<city>/...`` + ``gtFine/{train,val}/<city>/..._gtFine_labelIds.png`` (Cityscapes), both in
the Cityscapes *labelIds* encoding, so the real-data loaders read them back unchanged. Everything is a pure function
of (seed, shift, domain, split, index, size): regenerating gives identical files at any resolution.
Chapter: ``notebooks/data.ipynb``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import zlib
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..config import SHIFT_KNOBS, DataConfig, cache_key, cache_root
from ..files import atomic_write, move_aside
from .labels import CITYSCAPES_CLASSES, CITYSCAPES_LABEL_IDS

#: Bumped whenever the generator's output changes, so cached sets and the models trained on them are rebuilt.
VERSION = 3
META_FILE = "synthcity.json"  # written last: its presence marks a complete set

C = {name: i for i, name in enumerate(CITYSCAPES_CLASSES)}  # class name → train id
LABEL_ID = np.array(CITYSCAPES_LABEL_IDS + (0,) * (256 - len(CITYSCAPES_LABEL_IDS)), dtype=np.uint8)
VOID = 255  # train id of unlabelled pixels; written as labelId 0

TARGET_CITIES = {"train": ("ashford", "brookvale", "carlow"), "val": ("dunmore",)}

RGB = tuple[float, float, float]
Range = tuple[float, float]


def _mix(a: Any, b: Any, t: float) -> Any:
    """a + t·(b − a) through numbers, tuples and dicts (dicts: per key)."""
    if isinstance(a, Mapping):
        return {k: _mix(a[k], b[k], t) for k in a}
    if isinstance(a, tuple):
        return tuple(_mix(x, y, t) for x, y in zip(a, b, strict=True))
    return a + t * (b - a)


def _knob(name: str) -> Any:
    assert name in SHIFT_KNOBS
    return field(metadata={"knob": name})


@dataclass(frozen=True)
class DomainStyle:
    """Everything that differs between the domains, each field owned by one shift knob (its metadata)."""

    # appearance: colour statistics
    palette: dict[str, RGB] = _knob("appearance")
    brightness: float = _knob("appearance")  # global gain
    contrast: float = _knob("appearance")  # gain around mid-grey
    white_balance: RGB = _knob("appearance")  # per-channel gains (colour temperature)
    colour_jitter: float = _knob("appearance")  # per-object colour variation (fraction of 255)
    lighting: float = _knob("appearance")  # strength of a smooth lighting gradient across the image
    # texture: high-frequency content
    texture: float = _knob("texture")  # amplitude of per-class material patterns (fraction of 255)
    blur: float = _knob("texture")  # gaussian sigma in pixels at 256 px width
    noise: float = _knob("texture")  # sensor noise std (fraction of 255)
    # geometry: the camera and the size of things
    camera_height: float = _knob("geometry")  # metres
    horizon: float = _knob("geometry")  # horizon row as a fraction of the image height (the camera's pitch)
    object_scale: float = _knob("geometry")  # every placed object's size multiplier
    # priors: how often each class appears
    object_rate: dict[str, float] = _knob("priors")  # expected objects per scene for each placed class
    # layout: where things are
    road_half: Range = _knob("layout")  # half-width of the road (m)
    kerb: Range = _knob("layout")  # sidewalk width (m)
    verge: Range = _knob("layout")  # terrain strip between sidewalk and buildings (m)
    building_height: Range = _knob("layout")  # m
    crossing: float = _knob("layout")  # fraction of people and bicycles crossing the road
    parked: float = _knob("layout")  # fraction of cars and motorcycles parked on the sidewalk


_GAME_PALETTE = {
    "road": (95, 95, 100),
    "sidewalk": (200, 170, 150),
    "building": (160, 90, 60),
    "wall": (210, 200, 120),
    "fence": (150, 120, 80),
    "pole": (60, 60, 60),
    "traffic light": (40, 40, 30),
    "traffic sign": (240, 220, 30),
    "vegetation": (40, 170, 40),
    "terrain": (140, 200, 70),
    "sky": (90, 170, 250),
    "person": (230, 60, 60),
    "rider": (250, 120, 30),
    "car": (30, 60, 220),
    "truck": (200, 200, 210),
    "bus": (250, 200, 0),
    "train": (170, 40, 170),
    "motorcycle": (20, 20, 120),
    "bicycle": (0, 200, 200),
}
#: Per-class colours a game artist would not choose: duller buildings, darker vegetation, paler sky, people in
#: dark clothes, vehicles in other paints. The target's palette moves part of the way towards them (below); the
#: global part of the change (white balance, brightness, contrast) is in the style's other appearance fields.
_CITY_COLOURS = {
    **_GAME_PALETTE,
    "road": (110, 105, 100),
    "sidewalk": (165, 160, 160),
    "building": (130, 115, 105),
    "wall": (170, 165, 140),
    "fence": (110, 100, 90),
    "pole": (110, 115, 120),
    "traffic light": (70, 80, 60),
    "traffic sign": (60, 110, 200),
    "vegetation": (70, 110, 50),
    "terrain": (150, 140, 80),
    "sky": (175, 195, 215),
    "person": (60, 50, 110),
    "rider": (120, 60, 40),
    "car": (150, 40, 40),
    "truck": (120, 130, 110),
    "bus": (40, 120, 160),
    "train": (90, 100, 60),
    "motorcycle": (110, 100, 30),
    "bicycle": (170, 60, 140),
}

SOURCE_STYLE = DomainStyle(
    palette=_GAME_PALETTE,
    brightness=1.0,
    contrast=1.0,
    white_balance=(1.0, 1.0, 1.0),
    colour_jitter=0.08,
    lighting=0.0,
    texture=0.0,
    blur=0.0,
    noise=0.0,
    camera_height=2.2,
    horizon=0.38,
    object_scale=1.0,
    object_rate={
        "car": 4.0,
        "truck": 1.0,
        "bus": 0.7,
        "train": 0.35,
        "person": 2.5,
        "rider": 0.8,
        "bicycle": 0.8,
        "motorcycle": 0.8,
        "pole": 3.0,
        "traffic light": 1.6,
        "traffic sign": 1.5,
        "vegetation": 2.0,
        "wall": 0.8,
        "fence": 0.8,
    },
    road_half=(4.5, 7.5),
    kerb=(1.5, 3.0),
    verge=(1.5, 4.0),
    building_height=(6.0, 20.0),
    crossing=0.0,
    parked=0.0,
)
TARGET_STYLE = DomainStyle(
    palette={name: _mix(rgb, _CITY_COLOURS[name], 0.35) for name, rgb in _GAME_PALETTE.items()},
    brightness=0.9,
    contrast=0.8,
    white_balance=(1.06, 1.0, 0.88),
    colour_jitter=0.10,
    lighting=0.2,
    texture=0.10,
    blur=0.9,
    noise=0.03,
    camera_height=1.1,
    horizon=0.53,
    object_scale=1.5,
    object_rate={
        "car": 2.5,
        "truck": 0.6,
        "bus": 0.5,
        "train": 0.3,
        "person": 5.0,
        "rider": 1.5,
        "bicycle": 1.5,
        "motorcycle": 0.5,
        "pole": 4.0,
        "traffic light": 2.0,
        "traffic sign": 2.0,
        "vegetation": 3.5,
        "wall": 1.0,
        "fence": 1.2,
    },
    road_half=(3.0, 5.0),
    kerb=(2.5, 4.0),
    verge=(2.0, 5.0),
    building_height=(10.0, 35.0),
    crossing=0.35,
    parked=0.35,
)


@dataclass(frozen=True)
class Shift:
    """The strength of each knob of the source→target shift: 0 = off (the target looks like the source in that
    respect), 1 = the default pair, up to 2.

    Example: ``Shift.only("texture")`` is a pair that differs in texture alone; ``Shift()`` is the default pair.
    """

    appearance: float = 1.0
    texture: float = 1.0
    geometry: float = 1.0
    priors: float = 1.0
    layout: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2:
                raise ValueError(f"shift knob {name!r} must be a strength in [0, 2], got {value!r}")

    @classmethod
    def only(cls, knob: str, strength: float = 1.0) -> Shift:
        """A pair that differs in `knob` alone."""
        if knob not in SHIFT_KNOBS:
            raise ValueError(f"unknown shift knob {knob!r}; expected one of {SHIFT_KNOBS}")
        return cls(**{k: (strength if k == knob else 0.0) for k in SHIFT_KNOBS})

    @classmethod
    def from_tuple(cls, strengths: tuple[float, ...]) -> Shift:
        """From ``DataConfig.synthcity_shift`` (strengths in the order of ``SHIFT_KNOBS``)."""
        return cls(*strengths)

    def as_tuple(self) -> tuple[float, ...]:
        return tuple(float(v) for v in asdict(self).values())


def parse_shift(items: list[str]) -> Shift:
    """A shift from ``KNOB=STRENGTH`` words (unnamed knobs keep strength 1); ``only=KNOB`` is ``Shift.only(KNOB)``.

    Example: ``parse_shift(["texture=0", "geometry=1.5"])``, ``parse_shift(["only=layout"])``.
    """
    if len(items) == 1 and items[0].startswith("only="):
        return Shift.only(items[0].removeprefix("only="))
    strengths = {}
    for item in items:
        knob, sep, value = item.partition("=")
        if not sep or knob not in SHIFT_KNOBS:
            raise ValueError(f"--shift {item!r}: expected KNOB=STRENGTH with KNOB one of {SHIFT_KNOBS}, or only=KNOB")
        try:
            strengths[knob] = float(value)
        except ValueError:
            raise ValueError(f"--shift {item!r}: the strength must be a number in [0, 2]") from None
    return Shift(**strengths)


def style_for(domain: str, shift: Shift = Shift()) -> DomainStyle:
    """The style of `domain`: the source's, or the target's as the source moved by each knob's strength.

    Example: ``style_for("target", Shift.only("geometry")).camera_height == 1.1`` while its palette is the source's.
    """
    if domain == "source":
        return SOURCE_STYLE
    if domain != "target":
        raise ValueError(f"unknown SynthCity domain {domain!r}; expected 'source' or 'target'")
    strength = asdict(shift)
    return DomainStyle(
        **{
            f.name: _mix(getattr(SOURCE_STYLE, f.name), getattr(TARGET_STYLE, f.name), strength[f.metadata["knob"]])
            for f in dataclasses.fields(DomainStyle)
        }
    )


def shift_table(shift: Shift = Shift()) -> list[tuple[str, str, str, str]]:
    """(knob, field, source value, target value under `shift`) for every field of the style, as text; per-class
    fields (palette, object rates) are summarised by how many classes differ."""

    def text(value: Any) -> str:
        if isinstance(value, Mapping):
            return f"{len(value)} classes"
        if isinstance(value, tuple):
            return "(" + ", ".join(f"{v:.3g}" for v in value) + ")"
        return f"{value:.3g}"

    target = style_for("target", shift)
    rows = []
    for f in dataclasses.fields(DomainStyle):
        a, b = getattr(SOURCE_STYLE, f.name), getattr(target, f.name)
        if isinstance(a, Mapping):
            changed = sum(a[k] != b[k] for k in a)
            rows.append((f.metadata["knob"], f.name, text(a), f"{changed} of {len(a)} classes changed"))
        else:
            rows.append((f.metadata["knob"], f.name, text(a), text(b)))
    return rows


# Object sizes in metres: (width, height); a sprite's parts are boxes/ellipses in its unit square. Thin classes are
# thicker than real ones (a 0.45 m pole, a 0.8 m person) so that the quick resolution resolves them.
_SIZES = {
    "car": (4.2, 1.6),
    "truck": (3.0, 3.4),
    "bus": (10.0, 3.3),
    "train": (20.0, 3.8),
    "person": (0.8, 1.9),
    "rider": (1.8, 2.0),
    "bicycle": (1.8, 1.2),
    "motorcycle": (2.1, 1.3),
    "pole": (0.45, 6.0),
    "traffic light": (1.1, 5.0),
    "traffic sign": (1.3, 3.2),
    "vegetation": (3.5, 6.0),
    "wall": (9.0, 1.8),
    "fence": (8.0, 1.6),
}
#: Where along the street each class stands by default: "road", "kerb", "verge" or "far" (trains cross the street).
_LATERAL = {
    "car": "road",
    "truck": "road",
    "bus": "road",
    "train": "far",
    "motorcycle": "road",
    "rider": "road",
    "person": "kerb",
    "bicycle": "kerb",
    "pole": "kerb",
    "traffic light": "kerb",
    "traffic sign": "kerb",
    "vegetation": "verge",
    "wall": "verge",
    "fence": "verge",
}
_CROSSING = ("person", "bicycle")  # on the road with probability `crossing`
_PARKED = ("car", "motorcycle")  # on the kerb with probability `parked`


class _Canvas:
    """Label map + per-pixel tone (shading of details such as windows and wheels) + per-object colour jitter."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.label = np.full((h, w), C["sky"], dtype=np.uint8)
        self.tone = np.ones((h, w), dtype=np.float32)
        self.jitter = np.zeros((h, w, 3), dtype=np.float32)
        self.ys, self.xs = np.mgrid[0:h, 0:w].astype(np.float32)

    def _window(self, x0: float, y0: float, x1: float, y1: float):
        a, b = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, self.h)
        c, d = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, self.w)
        return (slice(a, b), slice(c, d)) if a < b and c < d else None

    def paint(self, mask_fn, box, cls: int | None, tone: float | None = None, jitter=None) -> None:
        """Paint pixels of `box` (x0, y0, x1, y1) where mask_fn(xs, ys) holds; cls None keeps the label (details)."""
        win = self._window(*box)
        if win is None:
            return
        m = mask_fn(self.xs[win], self.ys[win])
        if cls is not None:
            self.label[win][m] = cls
            self.tone[win][m] = 1.0
            if jitter is not None:
                self.jitter[win][m] = jitter
        if tone is not None:
            self.tone[win][m] = tone

    def rect(self, x0, y0, x1, y1, cls, **kw):
        # Pixel centres inside the box; at least one pixel wide so thin far poles do not vanish.
        x0, x1 = (x0, x1) if x1 - x0 >= 1 else ((x0 + x1) / 2 - 0.5, (x0 + x1) / 2 + 0.5)
        self.paint(
            lambda x, y: (x >= x0 - 0.5) & (x < x1 - 0.5) & (y >= y0 - 0.5) & (y < y1 - 0.5),
            (x0, y0, x1, y1),
            cls,
            **kw,
        )

    def ellipse(self, cx, cy, rx, ry, cls, **kw):
        rx, ry = max(rx, 0.6), max(ry, 0.6)
        self.paint(
            lambda x, y: ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0,
            (cx - rx, cy - ry, cx + rx, cy + ry),
            cls,
            **kw,
        )

    def triangle(self, cx, top, half, bottom, cls, **kw):
        def inside(x, y):
            t = (y - top) / max(bottom - top, 1e-3)
            return (t >= 0) & (t <= 1) & (np.abs(x - cx) <= half * t)

        self.paint(inside, (cx - half, top, cx + half, bottom), cls, **kw)


def _sprite(
    cv: _Canvas, cls_name: str, x0: float, y0: float, w: float, h: float, rng: np.random.Generator, jitter: np.ndarray
) -> None:
    """Draw one object in its screen box (x0, y0) .. (x0+w, y0+h) with the bottom on the ground."""
    k = C[cls_name]
    r = lambda fx0, fy0, fx1, fy1, cls=k, **kw: cv.rect(  # noqa: E731
        x0 + fx0 * w, y0 + fy0 * h, x0 + fx1 * w, y0 + fy1 * h, cls, jitter=jitter, **kw
    )
    e = lambda fcx, fcy, frx, fry, cls=k, **kw: cv.ellipse(  # noqa: E731
        x0 + fcx * w, y0 + fcy * h, frx * w, fry * h, cls, jitter=jitter, **kw
    )
    if cls_name in ("car", "truck", "bus", "train"):
        r(0.0, 0.4 if cls_name == "car" else 0.05, 1.0, 0.85)
        if cls_name == "car":
            r(0.2, 0.0, 0.8, 0.45)
            r(0.25, 0.08, 0.75, 0.4, tone=0.45)  # windows
        elif cls_name == "truck":
            r(0.0, 0.3, 0.3, 0.55, tone=0.5)  # cab window
        else:
            n = 4 if cls_name == "bus" else 8
            for i in range(n):  # window band
                r(0.05 + i * 0.9 / n, 0.15, 0.05 + (i + 0.7) * 0.9 / n, 0.4, tone=0.5)
        for fx in (0.18, 0.82):  # wheels
            e(fx, 0.87, 0.09, 0.13, tone=0.25)
    elif cls_name == "person":
        e(0.5, 0.08, 0.25, 0.08)  # head
        r(0.12, 0.15, 0.88, 0.58)  # torso
        r(0.16, 0.55, 0.47, 1.0)  # legs
        r(0.53, 0.55, 0.84, 1.0)
    elif cls_name == "rider":  # a person on a two-wheeler: the vehicle keeps its own class
        vehicle = C["bicycle"] if rng.random() < 0.5 else C["motorcycle"]
        for fx in (0.2, 0.8):
            e(fx, 0.8, 0.18, 0.2, cls=vehicle, tone=0.3)
        r(0.15, 0.58, 0.85, 0.75, cls=vehicle)
        e(0.5, 0.07, 0.12, 0.07)  # head
        r(0.34, 0.13, 0.66, 0.6)  # torso and legs on the saddle
        r(0.6, 0.22, 0.85, 0.34)  # arms to the handlebar
    elif cls_name in ("bicycle", "motorcycle"):
        for fx in (0.22, 0.78):
            e(fx, 0.68, 0.22, 0.32, tone=0.3)
        r(0.2, 0.3 if cls_name == "bicycle" else 0.2, 0.8, 0.55)
    elif cls_name == "pole":
        r(0.0, 0.0, 1.0, 1.0)
    elif cls_name == "traffic light":
        cv.rect(x0 + 0.3 * w, y0 + 0.3 * h, x0 + 0.7 * w, y0 + h, C["pole"], jitter=jitter)
        r(0.0, 0.0, 1.0, 0.32)
        lit = rng.integers(3)
        for i, fy in enumerate((0.06, 0.16, 0.26)):
            e(0.5, fy, 0.28, 0.04, tone=1.6 if i == lit else 0.6)
    elif cls_name == "traffic sign":
        cv.rect(x0 + 0.38 * w, y0 + 0.35 * h, x0 + 0.62 * w, y0 + h, C["pole"], jitter=jitter)
        if rng.random() < 0.5:
            cv.triangle(x0 + 0.5 * w, y0, 0.5 * w, y0 + 0.38 * h, k, jitter=jitter)
        else:
            e(0.5, 0.18, 0.5, 0.18)
    elif cls_name == "vegetation":
        if rng.random() < 0.6:  # tree: trunk and crown are both vegetation in Cityscapes
            r(0.42, 0.5, 0.58, 1.0, tone=0.55)
            e(0.5, 0.35, 0.5, 0.35)
        else:  # hedge
            r(0.0, 0.7, 1.0, 1.0)
    elif cls_name == "wall":
        r(0.0, 0.0, 1.0, 1.0)
    elif cls_name == "fence":
        r(0.0, 0.0, 1.0, 1.0)
        for i in range(8):
            r(i / 8 + 0.03, 0.1, i / 8 + 0.09, 1.0, tone=0.55)


def _place(name: str, style: DomainStyle, road_half: float, kerb: float, setback: float, rng: np.random.Generator):
    """(lateral X, depth z) in metres of one object of class `name` under the style's layout."""
    where = _LATERAL[name]
    if name in _CROSSING and rng.random() < style.crossing:
        where = "road"
    elif name in _PARKED and rng.random() < style.parked:
        where = "kerb"
    side = rng.choice((-1, 1))
    if where == "road":
        return rng.uniform(-road_half + 1.0, road_half - 1.0), rng.uniform(5, 40)
    if where == "kerb":
        return side * rng.uniform(road_half + 0.3, road_half + kerb), rng.uniform(4, 30)
    if where == "verge":
        return side * rng.uniform(road_half + kerb, setback + 1), rng.uniform(4, 40)
    return rng.uniform(-5, 5), rng.uniform(18, 45)  # far


def render_scene(style: DomainStyle, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render one scene: returns (image uint8 (h, w, 3), train-id label uint8 (h, w), 255 = void)."""
    cv = _Canvas(h, w)
    f = 0.9 * w  # focal length in pixels
    cx = w / 2 + rng.normal(0, 0.06) * w  # camera yaw shifts the vanishing point
    yh = (style.horizon + rng.normal(0, 0.02)) * h
    cam = style.camera_height * (1 + rng.normal(0, 0.05))
    road_half = rng.uniform(*style.road_half)
    kerb = rng.uniform(*style.kerb)
    verge = rng.uniform(*style.verge)
    setback = road_half + kerb + verge

    def to_screen(x: float, z: float, height: float = 0.0) -> tuple[float, float]:
        return cx + f * x / z, yh + f * (cam - height) / z

    # Ground plane: every pixel below the horizon is a point (X, z) on the street.
    ys, xs = cv.ys, cv.xs
    below = ys > yh + 0.5
    z = np.where(below, f * cam / np.maximum(ys - yh, 1e-3), np.inf)
    lateral = np.abs((xs - cx) * z / f)
    ground = np.where(
        lateral < road_half,
        C["road"],
        np.where(lateral < road_half + kerb, C["sidewalk"], np.where(lateral < setback, C["terrain"], C["sidewalk"])),
    )
    cv.label[below] = ground[below]
    # Lane markings are road in the label, bright in the image.
    with np.errstate(invalid="ignore"):
        dash = below & (np.abs((xs - cx) * z / f) < 0.12) & ((z % 6.0) < 3.0)
    cv.tone[dash] = 2.2

    # Building facades along both sides, each a vertical plane X = ±(setback + depth), z in [z0, z1].
    z_far = rng.uniform(60, 120)
    for side in (-1, 1):
        z0 = rng.uniform(2.0, 6.0)
        while z0 < z_far:
            z1 = z0 + rng.uniform(8, 25)
            height = rng.uniform(*style.building_height)
            xb = side * (setback + rng.uniform(0, 3))
            jit = rng.normal(0, 255 * style.colour_jitter, 3).astype(np.float32)
            with np.errstate(divide="ignore", invalid="ignore"):
                zc = f * xb / (xs - cx)  # depth at which column x meets the facade plane
                top = yh + f * (cam - height) / zc
                bottom = yh + f * cam / zc
                m = (zc >= z0) & (zc < min(z1, z_far)) & (ys >= top) & (ys < bottom)
            cv.label[m], cv.tone[m], cv.jitter[m] = C["building"], 1.0, jit
            # windows: a regular grid on the facade, in facade coordinates
            with np.errstate(divide="ignore", invalid="ignore"):
                fy = (bottom - ys) / np.maximum(bottom - top, 1e-3) * height
                win = m & ((fy % 3.0) > 1.2) & ((fy % 3.0) < 2.4) & ((zc % 4.0) > 1.0) & ((zc % 4.0) < 2.8)
            cv.tone[win] = 0.55
            z0 = z1 + rng.uniform(0, 4)
    # A facade closing the street far away (faces the camera).
    hb = rng.uniform(*style.building_height)
    xl, yt = to_screen(-setback - 3, z_far, hb)
    xr, yb = to_screen(setback + 3, z_far, 0.0)
    cv.rect(xl, yt, xr, yb, C["building"], jitter=rng.normal(0, 255 * style.colour_jitter, 3))

    # Objects: sample counts per class, place on the ground, draw far to near (painter's algorithm).
    objects = []
    for name, rate in style.object_rate.items():
        for _ in range(rng.poisson(rate)):
            x, zz = _place(name, style, road_half, kerb, setback, rng)
            objects.append((zz, x, name))
    for zz, x, name in sorted(objects, reverse=True):
        sw, sh = _SIZES[name]
        scale = style.object_scale * rng.uniform(0.85, 1.15)
        u, v = to_screen(x, zz)
        pw, ph = f * sw * scale / zz, f * sh * scale / zz
        jit = rng.normal(0, 255 * style.colour_jitter, 3).astype(np.float32)
        _sprite(cv, name, u - pw / 2, v - ph, pw, ph, rng, jit)

    return _appearance(cv, style, rng), cv.label


#: Material patterns of the texture knob: (fine grain, coarse blotches, horizontal courses) amplitudes per class.
_MATERIALS = {
    "road": (1.0, 0.6, 0.0),
    "sidewalk": (0.6, 0.3, 0.8),
    "building": (0.4, 0.3, 1.0),
    "wall": (0.5, 0.2, 1.0),
    "vegetation": (1.2, 1.0, 0.0),
    "terrain": (1.0, 0.8, 0.0),
    "sky": (0.0, 0.8, 0.0),
}


def _appearance(cv: _Canvas, style: DomainStyle, rng: np.random.Generator) -> np.ndarray:
    """Turn the label, tone and jitter maps into an RGB image in the domain's style."""
    h, w = cv.h, cv.w
    pal = np.zeros((256, 3), dtype=np.float32)
    for name, rgb in style.palette.items():
        pal[C[name]] = rgb
    img = (pal[cv.label] + cv.jitter) * cv.tone[..., None]
    if style.texture > 0:
        amp = np.zeros((256, 3), dtype=np.float32)
        default = (0.3, 0.2, 0.0)  # objects: a little grain
        for name, k in C.items():
            amp[k] = _MATERIALS.get(name, default)
        a = amp[cv.label]
        fine = rng.normal(0, 1, (h, w)).astype(np.float32)
        coarse = rng.normal(0, 1, (h // 8 + 2, w // 8 + 2)).astype(np.float32)
        coarse = _gaussian_blur(np.kron(coarse, np.ones((8, 8), np.float32))[:h, :w, None], 2.0)[..., 0]
        period = max(2.0, h / 32)
        courses = np.sign(np.sin(2 * np.pi * cv.ys / period + rng.uniform(0, 2 * np.pi))).astype(np.float32)
        pattern = a[..., 0] * fine + a[..., 1] * 2.5 * coarse + a[..., 2] * courses
        img += 255 * style.texture * pattern[..., None]
    if style.lighting > 0:  # sun from one side and a darker bottom: a smooth multiplicative field
        gx = np.linspace(-1, 1, w, dtype=np.float32)[None, :] * rng.uniform(-1, 1)
        gy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
        img *= (1.0 + style.lighting * (0.5 * gx - 0.3 * gy) + rng.normal(0, style.lighting / 3))[..., None]
    # global colour statistics: white balance, brightness, contrast around mid-grey
    img = (img * np.asarray(style.white_balance, np.float32) * style.brightness - 128) * style.contrast + 128
    if style.blur > 0:
        img = _gaussian_blur(img, style.blur * w / 256)
    if style.noise > 0:
        img += rng.normal(0, 255 * style.noise, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(round(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    pad = np.pad(img, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    rows = sum(k[i] * pad[:, i : i + img.shape[1]] for i in range(len(k)))
    return sum(k[i] * rows[i : i + img.shape[0]] for i in range(len(k)))


def restyled(index: int, shift: Shift, size: tuple[int, int] = (128, 256), seed: int = 0):
    """Source street `index` of the set drawn in the target style under `shift`, from the same random draws: how
    the knobs change one scene (``Shift(0, 0, 0, 0, 0)`` gives the source item itself). Returns (image, label)."""
    rng = np.random.default_rng(_scene_seed(seed, "source", "train", index))
    return render_scene(style_for("target", shift), *size, rng)


def knob_scenes(index: int = 0, size: tuple[int, int] = (128, 256)) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(title, image, label) of one street: as the source, as the default target, and under each knob alone."""
    shifts = [("source", Shift(0, 0, 0, 0, 0)), ("target: every knob", Shift())]
    shifts += [(f"{knob} alone", Shift.only(knob)) for knob in SHIFT_KNOBS]
    return [(title, *restyled(index, shift, size)) for title, shift in shifts]


def pair_scenes(strengths: Mapping[str, float], index: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(title, image, label) of one street as the source and as the target under knob `strengths`."""
    return [("source", *restyled(index, Shift(0, 0, 0, 0, 0))), ("target", *restyled(index, Shift(**strengths)))]


# ----------------------------------------------------------------------------------------------------------------
# Writing the pair to disk in the GTA5 and Cityscapes layouts


@dataclass(frozen=True)
class SynthCitySpec:
    """What a SynthCity folder holds; stored as ``synthcity.json`` so a changed spec is detected and rebuilt."""

    seed: int = 0
    height: int = 128
    width: int = 256
    n_source: int = 2000
    n_target_train: int = 500
    n_target_val: int = 200
    shift: Shift = Shift()


def _scene_seed(seed: int, domain: str, split: str, index: int) -> int:
    # The shift is not part of the scene's seed: the same item under another shift is the same street restyled.
    return zlib.crc32(f"synthcity:{seed}:{domain}:{split}:{index}".encode())


def render_item(spec: SynthCitySpec, domain: str, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic (image, train-id label) of one item."""
    rng = np.random.default_rng(_scene_seed(spec.seed, domain, split, index))
    return render_scene(style_for(domain, spec.shift), spec.height, spec.width, rng)


def _target_path(split: str, index: int) -> tuple[str, str]:
    cities = TARGET_CITIES[split]
    city = cities[index % len(cities)]
    stem = f"{city}/{city}_{index // len(cities):06d}_000019"
    return f"leftImg8bit/{split}/{stem}_leftImg8bit.png", f"gtFine/{split}/{stem}_gtFine_labelIds.png"


def _write_png(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def _write_chunk(args: tuple[SynthCitySpec, str, str, list[int], str]) -> int:
    """Render and write the images `indices` of one split; returns how many were written (for the progress bar)."""
    spec, domain, split, indices, out = args
    root = Path(out)
    for i in indices:
        image, label = render_item(spec, domain, split, i)
        label_ids = np.where(label == VOID, 0, LABEL_ID[label]).astype(np.uint8)
        if domain == "source":
            img_rel, lbl_rel = f"images/{i:05d}.png", f"labels/{i:05d}.png"
        else:
            img_rel, lbl_rel = _target_path(split, i)
        _write_png(root / domain / img_rel, image)
        _write_png(root / domain / lbl_rel, label_ids)
    return len(indices)


#: Images per task of the worker pool: small enough for the progress bar to move often, large enough to keep the
#: pool's overhead negligible.
CHUNK = 16


def generate(
    out: str | os.PathLike,
    spec: SynthCitySpec = SynthCitySpec(),
    *,
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write SynthCity under `out`: ``out/source`` (GTA5 layout) and ``out/target`` (Cityscapes layout).

    Refuses to write into a non-empty folder that holds another spec (or anything else) unless `overwrite`, which
    moves the folder aside (``<out>.previous-<time>``) and writes the new set into an empty one: no stale image of
    the old set is left to contradict the new ``synthcity.json``, and nothing is deleted.
    """
    root = Path(out)
    meta = root / META_FILE
    if root.exists() and any(root.iterdir()):
        if meta.exists() and json.loads(meta.read_text()) == stored_meta(spec) and not overwrite:
            return root
        if not overwrite:
            raise FileExistsError(
                f"{root} is not empty and does not hold SynthCity {asdict(spec)}; "
                "pass overwrite=True (CLI: --overwrite; the old folder is moved aside) or choose another --out"
            )
        print(f"{root} moved to {move_aside(root)}")
    n = spec.n_source + spec.n_target_train + spec.n_target_val
    print(f"generating SynthCity: {n:,} images at {spec.height}x{spec.width} into {root}", flush=True)
    t0 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    jobs = [
        ("source", "train", spec.n_source),
        ("target", "train", spec.n_target_train),
        ("target", "val", spec.n_target_val),
    ]
    workers = workers or min(os.cpu_count() or 1, 8)
    chunks = [
        (spec, domain, split, list(range(k, min(k + CHUNK, count))), str(root))
        for domain, split, count in jobs
        for k in range(0, count, CHUNK)
    ]
    # a text bar (not a notebook widget): it reads the same in a terminal, a notebook and papermill's output
    with tqdm(total=n, unit="image", desc="SynthCity", mininterval=1.0, file=sys.stderr) as bar:
        if workers == 1:
            for c in chunks:
                bar.update(_write_chunk(c))
        else:
            with ProcessPoolExecutor(workers) as pool:
                for written in pool.map(_write_chunk, chunks):
                    bar.update(written)
    meta.write_text(json.dumps(stored_meta(spec), indent=2))
    print(f"SynthCity: {n:,} images written in {time.perf_counter() - t0:.0f} s by {workers} process(es)", flush=True)
    return root


def stored_meta(spec: SynthCitySpec) -> dict:
    """What ``synthcity.json`` records: the generator's version and the spec with its knobs (records cite both)."""
    return {"version": VERSION, **asdict(spec)}


def spec_for(data: DataConfig) -> SynthCitySpec:
    """The spec of the set a run on `data` uses (seed 0), as the cache generates it."""
    (h, w), (n_source, n_target_train, n_target_val) = data.synthcity_size, data.synthcity_counts
    return SynthCitySpec(0, h, w, n_source, n_target_train, n_target_val, Shift.from_tuple(data.synthcity_shift))


#: The generator's tables in the cache key too: a retuned style that forgot to bump VERSION still gets a new set.
_TABLES = repr((SOURCE_STYLE, TARGET_STYLE, _SIZES, _LATERAL, _MATERIALS))


def cache_dir(data: DataConfig) -> Path:
    """Where the shared cache keeps the set a run on `data` uses (version, size, counts and knobs are the key)."""
    h, w = data.synthcity_size
    key = cache_key(
        [VERSION, _TABLES, list(data.synthcity_size), list(data.synthcity_counts), list(data.synthcity_shift)]
    )
    return cache_root() / f"synthcity-{h}x{w}-{key}"


def ensure(out: str | os.PathLike, spec: SynthCitySpec = SynthCitySpec()) -> Path:
    """Generate SynthCity into `out` unless it already holds exactly `spec` (what notebooks call)."""
    return generate(out, spec)
