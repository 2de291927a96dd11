"""Writers of tiny datasets in the real folder layouts and encodings, for the data tests.

Images are random RGB; labels are whatever raw id arrays a test passes, written the way each dataset ships them:
GTA5 as palette PNGs, Cityscapes as 8-bit gray labelIds, SYNTHIA as genuine 16-bit 3-channel PNGs (written by a
minimal PNG encoder below, since PIL cannot write 16-bit RGB).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def save_rgb(path: Path, height: int, width: int, seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def save_gray(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(ids, dtype=np.uint8), mode="L").save(path)


def save_palette(path: Path, ids: np.ndarray) -> None:
    """8-bit palette PNG (GTA5's format): the indices are the ids, the colours are decoration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(ids, dtype=np.uint8)
    im = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.tobytes())
    im.putpalette([(37 * i + 11 * c) % 256 for i in range(256) for c in range(3)])
    im.save(path)


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def write_png16(path: Path, array: np.ndarray) -> None:
    """A 16-bit RGB PNG (colour type 2, bit depth 16) from an (H, W, 3) uint16 array, channel 0 = R.

    Scanline filters cycle through None, Sub, Up, Average and Paeth, as real encoders mix them, so a reader is
    tested on every filter.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w, c = array.shape
    assert c == 3 and array.dtype == np.uint16
    bpp = 6  # bytes per pixel: 3 samples x 2 bytes
    rows = np.frombuffer(array.astype(">u2").tobytes(), dtype=np.uint8).reshape(h, w * bpp).astype(np.int64)
    left = np.pad(rows, ((0, 0), (bpp, 0)))[:, :-bpp]  # byte bpp to the left (0 at the start)
    up = np.pad(rows, ((1, 0), (0, 0)))[:-1]  # byte above (0 on the first row)
    up_left = np.pad(up, ((0, 0), (bpp, 0)))[:, :-bpp]
    predictors = [0 * rows, left, up, (left + up) // 2, _paeth(left, up, up_left)]
    raw = b"".join(
        bytes([r % 5]) + ((rows[r] - predictors[r % 5][r]) % 256).astype(np.uint8).tobytes() for r in range(h)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def write_gta5(root: Path, labels: list[np.ndarray], image_sizes: list[tuple[int, int]] | None = None) -> Path:
    """images/0000i.png + labels/0000i.png; image i has label i's size unless image_sizes[i] = (h, w) says otherwise."""
    for i, ids in enumerate(labels):
        h, w = image_sizes[i] if image_sizes else ids.shape
        save_rgb(root / "images" / f"{i + 1:05d}.png", h, w, seed=i)
        save_palette(root / "labels" / f"{i + 1:05d}.png", ids)
    return root


def cityscapes_stem(city: str, j: int) -> str:
    return f"{city}_000000_{j:06d}"


def write_cityscapes(root: Path, split: str, cities: dict[str, list[np.ndarray]], labels: bool = True) -> Path:
    """leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png and gtFine/<split>/<city>/<stem>_gtFine_labelIds.png."""
    for city, label_list in cities.items():
        for j, ids in enumerate(label_list):
            stem = cityscapes_stem(city, j)
            save_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", *ids.shape, seed=j)
            if labels:
                save_gray(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
                # the other gtFine files are present in the real archive and must be ignored
                save_rgb(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", *ids.shape)
    return root


def write_synthia(root: Path, labels: list[np.ndarray]) -> Path:
    """RGB/000000i.png + GT/LABELS/000000i.png, each label an (H, W, 3) uint16 array (class id in channel 0)."""
    for i, ids in enumerate(labels):
        save_rgb(root / "RGB" / f"{i:07d}.png", *ids.shape[:2], seed=i)
        write_png16(root / "GT" / "LABELS" / f"{i:07d}.png", ids)
    return root


def write_crosscity(
    root: Path, city: str, n_train: int, test_labels: list[np.ndarray], label_suffix: str = "_eval"
) -> Path:
    """<City>/Images/Train/*, <City>/Images/Test/* and <City>/Labels/Test/<stem><label_suffix>.png."""
    for i in range(n_train):
        save_rgb(root / city / "Images" / "Train" / f"pano_{i:05d}.png", 6, 8, seed=i)
    for i, ids in enumerate(test_labels):
        save_rgb(root / city / "Images" / "Test" / f"pano_{i:05d}.png", *ids.shape, seed=i)
        save_gray(root / city / "Labels" / "Test" / f"pano_{i:05d}{label_suffix}.png", ids)
    return root


def write_folder(root: Path, labels: dict[str, np.ndarray], id_map: dict[int, int], classes: list[str]) -> Path:
    """<root>/images/<stem>.jpg, <root>/labels/<stem>.png and <root>/id_map.json."""
    for stem, ids in labels.items():
        path = root / "images" / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((*ids.shape, 3), 100, dtype=np.uint8)).save(path)
        save_gray(root / "labels" / f"{stem}.png", ids)
    table = {str(raw): train for raw, train in id_map.items()}
    (root / "id_map.json").write_text(json.dumps({"classes": classes, "id_map": table}))
    return root
