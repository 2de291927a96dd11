"""SynthCity: an embedded, procedural source/target pair of street scenes (the book's laptop-scale GTA5→Cityscapes).

Both domains share one scene grammar: a camera looks down a straight street (road, sidewalks, terrain verges),
buildings, walls and fences line it, and objects of the other 14 Cityscapes classes stand on the ground plane in
perspective, drawn far-to-near so that near objects occlude far ones. What shifts between the domains is what shifts
between a game and a city:

========================  ==============================  ===============================================
                          source ("game", GTA5 layout)      target ("real", Cityscapes layout)
========================  ==============================  ===============================================
appearance                saturated flat colours,          another palette, lighting gradient, per-class
                          sharp edges                      texture, blur, sensor noise
camera                    higher camera, horizon high      lower camera, horizon lower
class frequencies         many vehicles, few people        many people and bicycles, more vegetation
========================  ==============================  ===============================================

The source is written as ``images/NNNNN.png`` + ``labels/NNNNN.png`` (GTA5), the target as
``leftImg8bit/{train,val}/<city>/...`` + ``gtFine/{train,val}/<city>/..._gtFine_labelIds.png`` (Cityscapes), both in
the Cityscapes *labelIds* encoding, so the real-data loaders read them back unchanged. Everything is a pure function
of (seed, domain, split, index, size): regenerating gives identical files at any resolution.
Chapter: ``notebooks/data.ipynb``.
"""

from __future__ import annotations

import json
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import cache_key, cache_root
from ..files import atomic_write, move_aside
from .labels import CITYSCAPES_CLASSES, CITYSCAPES_LABEL_IDS

#: Bumped whenever the generator's output changes, so cached sets and the models trained on them are rebuilt.
VERSION = 2
META_FILE = "synthcity.json"  # written last: its presence marks a complete set

C = {name: i for i, name in enumerate(CITYSCAPES_CLASSES)}  # class name → train id
LABEL_ID = np.array(CITYSCAPES_LABEL_IDS + (0,) * (256 - len(CITYSCAPES_LABEL_IDS)), dtype=np.uint8)
VOID = 255  # train id of unlabelled pixels; written as labelId 0

TARGET_CITIES = {"train": ("ashford", "brookvale", "carlow"), "val": ("dunmore",)}


@dataclass(frozen=True)
class DomainStyle:
    """Statistics and appearance of one domain. Shapes and layout rules are shared; these are not."""

    name: str
    camera_height: float  # metres
    horizon: float  # horizon row as a fraction of the image height
    object_rate: dict[str, float]  # expected objects per scene for each placed class
    palette: dict[str, tuple[int, int, int]]
    colour_jitter: float  # per-object colour variation (fraction of 255)
    texture: float  # amplitude of per-class texture noise
    lighting: float  # strength of the vertical/horizontal lighting gradient
    blur: float  # gaussian sigma in pixels at 256 px width
    noise: float  # sensor noise std (fraction of 255)


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
# The "real" palette is the game's under a global colour-temperature and desaturation change, plus per-class
# changes a game artist would not make (duller buildings, darker vegetation, paler sky, muted vehicles).
_REAL_SHIFT = {
    "building": (135, 110, 95),
    "vegetation": (60, 130, 55),
    "sky": (150, 185, 220),
    "person": (170, 70, 80),
    "car": (60, 80, 160),
    "bus": (200, 150, 40),
    "truck": (160, 160, 150),
    "terrain": (130, 160, 80),
    "sidewalk": (170, 160, 155),
    "wall": (180, 170, 130),
    "fence": (130, 110, 85),
    "rider": (180, 110, 60),
    "traffic sign": (220, 210, 90),
    "bicycle": (40, 150, 150),
    "train": (140, 70, 130),
    "motorcycle": (50, 50, 100),
}


def _real_palette() -> dict[str, tuple[int, int, int]]:
    out = {}
    for name, rgb in _GAME_PALETTE.items():
        c = np.array(_REAL_SHIFT.get(name, rgb), dtype=float)
        grey = c.mean()
        c = grey + 0.8 * (c - grey)  # desaturate
        c = c * np.array([1.05, 1.0, 0.9])  # warmer light
        out[name] = tuple(int(v) for v in np.clip(c, 0, 255))
    return out


SOURCE_STYLE = DomainStyle(
    name="source",
    camera_height=2.2,
    horizon=0.38,
    object_rate={
        "car": 5.0,
        "truck": 1.2,
        "bus": 0.8,
        "train": 0.25,
        "person": 1.5,
        "rider": 0.4,
        "bicycle": 0.4,
        "motorcycle": 0.6,
        "pole": 4.0,
        "traffic light": 1.2,
        "traffic sign": 1.5,
        "vegetation": 2.0,
        "wall": 0.8,
        "fence": 0.8,
    },
    palette=_GAME_PALETTE,
    colour_jitter=0.10,
    texture=0.0,
    lighting=0.0,
    blur=0.0,
    noise=0.0,
)
TARGET_STYLE = DomainStyle(
    name="target",
    camera_height=1.4,
    horizon=0.46,
    object_rate={
        "car": 3.5,
        "truck": 0.5,
        "bus": 0.5,
        "train": 0.15,
        "person": 4.0,
        "rider": 1.0,
        "bicycle": 1.5,
        "motorcycle": 0.4,
        "pole": 5.0,
        "traffic light": 1.5,
        "traffic sign": 2.0,
        "vegetation": 4.0,
        "wall": 1.0,
        "fence": 1.2,
    },
    palette=_real_palette(),
    colour_jitter=0.06,
    texture=0.05,
    lighting=0.25,
    blur=0.7,
    noise=0.025,
)
STYLES = {"source": SOURCE_STYLE, "target": TARGET_STYLE}

# Object sizes in metres: (width, height); a sprite's parts are boxes/ellipses in its unit square.
_SIZES = {
    "car": (4.2, 1.5),
    "truck": (2.6, 3.4),
    "bus": (10.0, 3.2),
    "train": (24.0, 3.8),
    "person": (0.6, 1.75),
    "rider": (0.7, 1.8),
    "bicycle": (1.7, 1.0),
    "motorcycle": (2.0, 1.1),
    "pole": (0.25, 6.0),
    "traffic light": (0.5, 5.0),
    "traffic sign": (0.8, 3.0),
    "vegetation": (3.5, 6.0),
    "wall": (9.0, 1.6),
    "fence": (8.0, 1.5),
}
_LATERAL = {  # where along the street each class stands: "road", "kerb" or "verge"
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
    r = lambda fx0, fy0, fx1, fy1, cls=k, **kw: cv.rect(
        x0 + fx0 * w, y0 + fy0 * h, x0 + fx1 * w, y0 + fy1 * h, cls, jitter=jitter, **kw
    )
    e = lambda fcx, fcy, frx, fry, cls=k, **kw: cv.ellipse(
        x0 + fcx * w, y0 + fcy * h, frx * w, fry * h, cls, jitter=jitter, **kw
    )
    if cls_name in ("car", "truck", "bus", "train"):
        cab = {
            "car": (0.2, 0.8, 0.0, 0.45),
            "truck": (0.0, 0.3, 0.25, 0.55),
            "bus": (0.0, 1.0, 0.0, 0.0),
            "train": (0.0, 1.0, 0.0, 0.0),
        }[cls_name]
        r(0.0, 0.4 if cls_name == "car" else 0.05, 1.0, 0.85)
        if cls_name == "car":
            r(cab[0], 0.0, cab[1], 0.45)
            r(cab[0] + 0.05, 0.08, cab[1] - 0.05, 0.4, tone=0.45)  # windows
        else:
            for i in range(4 if cls_name != "train" else 8):  # window band
                r(
                    0.05 + i * (0.9 / (4 if cls_name != "train" else 8)),
                    0.15,
                    0.05 + (i + 0.7) * (0.9 / (4 if cls_name != "train" else 8)),
                    0.4,
                    tone=0.5,
                )
        for fx in (0.18, 0.82):  # wheels
            e(fx, 0.87, 0.09, 0.13, tone=0.25)
    elif cls_name in ("person", "rider"):
        base = 0.45 if cls_name == "rider" else 1.0
        e(0.5, 0.08, 0.2, 0.07)  # head
        r(0.2, 0.15, 0.8, 0.55 * base + 0.05)  # torso
        if cls_name == "person":
            r(0.22, 0.55, 0.46, 1.0)
            r(0.54, 0.55, 0.78, 1.0)
        else:
            vehicle = "bicycle" if rng.random() < 0.5 else "motorcycle"
            for fx in (0.0, 1.0):
                e(fx, 0.85, 0.38, 0.14, cls=C[vehicle], tone=0.3)
            r(0.0, 0.62, 1.0, 0.78, cls=C[vehicle])
    elif cls_name in ("bicycle", "motorcycle"):
        for fx in (0.22, 0.78):
            e(fx, 0.7, 0.2, 0.28, tone=0.3)
        r(0.2, 0.35 if cls_name == "bicycle" else 0.3, 0.8, 0.55)
    elif cls_name == "pole":
        r(0.3, 0.0, 0.7, 1.0)
    elif cls_name == "traffic light":
        cv.rect(x0 + 0.4 * w, y0 + 0.25 * h, x0 + 0.6 * w, y0 + h, C["pole"], jitter=jitter)
        r(0.0, 0.0, 1.0, 0.27)
        for i, fy in enumerate((0.05, 0.13, 0.21)):
            e(0.5, fy, 0.25, 0.03, tone=1.6 if i == rng.integers(3) else 0.6)
    elif cls_name == "traffic sign":
        cv.rect(x0 + 0.42 * w, y0 + 0.3 * h, x0 + 0.58 * w, y0 + h, C["pole"], jitter=jitter)
        if rng.random() < 0.5:
            cv.triangle(x0 + 0.5 * w, y0, 0.5 * w, y0 + 0.3 * h, k, jitter=jitter)
        else:
            e(0.5, 0.15, 0.5, 0.15)
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


def render_scene(style: DomainStyle, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render one scene: returns (image uint8 (h, w, 3), train-id label uint8 (h, w), 255 = void)."""
    cv = _Canvas(h, w)
    f = 0.9 * w  # focal length in pixels
    cx = w / 2 + rng.normal(0, 0.06) * w  # camera yaw shifts the vanishing point
    yh = (style.horizon + rng.normal(0, 0.02)) * h
    cam = style.camera_height * (1 + rng.normal(0, 0.05))
    road_half = rng.uniform(3.5, 7.0)
    kerb = rng.uniform(1.5, 3.5)
    verge = rng.uniform(0.0, 4.0)  # terrain strip between sidewalk and buildings
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
            height = rng.uniform(6, 25)
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
    hb = rng.uniform(10, 30)
    xl, yt = to_screen(-setback - 3, z_far, hb)
    xr, yb = to_screen(setback + 3, z_far, 0.0)
    cv.rect(xl, yt, xr, yb, C["building"], jitter=rng.normal(0, 255 * style.colour_jitter, 3))

    # Objects: sample counts per class, place on the ground, draw far to near (painter's algorithm).
    objects = []
    for name, rate in style.object_rate.items():
        for _ in range(rng.poisson(rate)):
            where = _LATERAL[name]
            if where == "road":
                x = rng.uniform(-road_half + 1.2, road_half - 1.2)
                zz = rng.uniform(5, 50)
            elif where == "kerb":
                x = rng.choice((-1, 1)) * rng.uniform(road_half + 0.3, road_half + kerb)
                zz = rng.uniform(4, 40)
            elif where == "verge":
                x = rng.choice((-1, 1)) * rng.uniform(road_half + kerb, setback + 1)
                zz = rng.uniform(4, 45)
            else:  # trains cross far down the street
                x, zz = rng.uniform(-5, 5), rng.uniform(25, 55)
            objects.append((zz, x, name))
    for zz, x, name in sorted(objects, reverse=True):
        sw, sh = _SIZES[name]
        scale = rng.uniform(0.85, 1.15)
        u, v = to_screen(x, zz)
        pw, ph = f * sw * scale / zz, f * sh * scale / zz
        jit = rng.normal(0, 255 * style.colour_jitter, 3).astype(np.float32)
        _sprite(cv, name, u - pw / 2, v - ph, pw, ph, rng, jit)

    return _appearance(cv, style, rng), cv.label


def _appearance(cv: _Canvas, style: DomainStyle, rng: np.random.Generator) -> np.ndarray:
    """Turn the label, tone and jitter maps into an RGB image in the domain's style."""
    h, w = cv.h, cv.w
    pal = np.zeros((256, 3), dtype=np.float32)
    for name, rgb in style.palette.items():
        pal[C[name]] = rgb
    img = (pal[cv.label] + cv.jitter) * cv.tone[..., None]
    if style.texture > 0:
        # Per-class texture: coarse noise whose scale depends on the class, so surfaces look like materials.
        coarse = rng.normal(0, 1, (h // 4 + 2, w // 4 + 2, 1)).astype(np.float32)
        coarse = np.kron(coarse, np.ones((4, 4, 1), dtype=np.float32))[:h, :w]
        fine = rng.normal(0, 1, (h, w, 1)).astype(np.float32)
        rough = np.isin(cv.label, [C["road"], C["vegetation"], C["terrain"], C["sidewalk"], C["building"]])
        img += 255 * style.texture * np.where(rough[..., None], 0.6 * coarse + 0.8 * fine, 0.3 * coarse)
    if style.lighting > 0:
        # Sun from one side and a darker bottom: a smooth multiplicative field.
        gx = np.linspace(-1, 1, w, dtype=np.float32)[None, :] * rng.uniform(-1, 1)
        gy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
        light = 1.0 + style.lighting * (0.5 * gx - 0.3 * gy) + rng.normal(0, style.lighting / 3)
        img *= light[..., None]
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


def _scene_seed(seed: int, domain: str, split: str, index: int) -> int:
    return zlib.crc32(f"synthcity:{seed}:{domain}:{split}:{index}".encode())


def render_item(spec: SynthCitySpec, domain: str, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic (image, train-id label) of one item."""
    rng = np.random.default_rng(_scene_seed(spec.seed, domain, split, index))
    return render_scene(STYLES[domain], spec.height, spec.width, rng)


def _target_path(split: str, index: int) -> tuple[str, str]:
    cities = TARGET_CITIES[split]
    city = cities[index % len(cities)]
    stem = f"{city}/{city}_{index // len(cities):06d}_000019"
    return f"leftImg8bit/{split}/{stem}_leftImg8bit.png", f"gtFine/{split}/{stem}_gtFine_labelIds.png"


def _write_png(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def _write_chunk(args: tuple[SynthCitySpec, str, str, list[int], str]) -> None:
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
    root.mkdir(parents=True, exist_ok=True)
    jobs = [
        ("source", "train", spec.n_source),
        ("target", "train", spec.n_target_train),
        ("target", "val", spec.n_target_val),
    ]
    workers = workers or min(os.cpu_count() or 1, 8)
    chunks = [(spec, d, s, list(range(k, n, workers)), str(root)) for d, s, n in jobs for k in range(workers)]
    if workers == 1:
        for c in chunks:
            _write_chunk(c)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_chunk, chunks))
    meta.write_text(json.dumps(stored_meta(spec), indent=2))
    return root


def stored_meta(spec: SynthCitySpec) -> dict:
    """What ``synthcity.json`` records: the generator's version and the spec (results records cite both)."""
    return {"version": VERSION, **asdict(spec)}


def spec_for(size: tuple[int, int], counts: tuple[int, int, int]) -> SynthCitySpec:
    """The spec of the set a run of this size and counts uses (seed 0), as the cache generates it."""
    (h, w), (n_source, n_target_train, n_target_val) = size, counts
    return SynthCitySpec(0, h, w, n_source, n_target_train, n_target_val)


def cache_dir(size: tuple[int, int], counts: tuple[int, int, int]) -> Path:
    """Where the shared cache keeps the set of this size and counts (the version is part of the key)."""
    h, w = size
    return cache_root() / f"synthcity-{h}x{w}-{cache_key([VERSION, list(size), list(counts)])}"


def ensure(out: str | os.PathLike, spec: SynthCitySpec = SynthCitySpec()) -> Path:
    """Generate SynthCity into `out` unless it already holds exactly `spec` (what notebooks call)."""
    return generate(out, spec)
