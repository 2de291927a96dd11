"""SYNTHIA-RAND-CITYSCAPES (Ros et al., "The SYNTHIA Dataset: A Large Collection of Synthetic Images for Semantic
Segmentation of Urban Scenes", CVPR 2016).

9,400 rendered 1280×760 images. The labels are **16-bit, multi-channel PNGs**: the class id is in channel 0 (R in
RGB order; OpenCV's BGR would put it last) and the instance id in channel 1. Reading them as 8-bit RGB, which PIL
does silently, keeps only the high byte and gives garbage; :func:`read_synthia_label` is the only reader here and it
refuses anything but a 16-bit PNG. It decodes with libpng through ``torchvision.io.decode_png`` (PIL has no 16-bit
RGB mode).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_png, read_file

from udalib.data.base import (
    CorruptFileError,
    LabelFormatError,
    LabelMap,
    PairedDataset,
    PairScan,
    Transform,
    scan_same_names,
    select_listed,
)
from udalib.data.labels import SYNTHIA16, Protocol

LAYOUT = "{root}/RGB/NNNNNNN.png and {root}/GT/LABELS/NNNNNNN.png (16-bit PNGs, class id in channel 0)"
#: SYNTHIA's class ids are 0..22 (0 void, 13 parking-slot, 14 road-work and 22 lanemarking are never trained on);
#: labels.py maps the 16 (or 19) shared classes, every other id of this range is ignored on purpose.
SYNTHIA_KNOWN_IDS = range(23)


def read_synthia_label(path: Path) -> np.ndarray:
    """(H, W) uint16 class ids: channel 0 of a 16-bit SYNTHIA GT/LABELS PNG.

    Raises LabelFormatError when the PNG is 8-bit (a converted or wrong file) and CorruptFileError when it cannot
    be decoded.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"SYNTHIA label {path} does not exist")
    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its image codecs; the version is pinned
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = decode_png(read_file(str(path)), mode=ImageReadMode.UNCHANGED)  # (C, H, W), RGB order
    except RuntimeError as err:
        raise CorruptFileError(f"cannot read SYNTHIA label {path}: {err}") from err
    if decoded.dtype != torch.uint16:
        raise LabelFormatError(
            f"SYNTHIA label {path} is 8-bit ({decoded.shape[0]} channel(s)): SYNTHIA-RAND-CITYSCAPES labels must be "
            f"the original 16-bit GT/LABELS PNGs with the class id in channel 0 (R). An 8-bit file was converted or "
            f"is not a GT/LABELS file; extract the labels again from the official archive."
        )
    return decoded[0].numpy()


def synthia_label_map(protocol: Protocol) -> LabelMap:
    """SYNTHIA class ids → `protocol`'s train ids (16 classes by default; CITYSCAPES19 uses the 19-class table)."""
    return LabelMap(protocol.synthia_lut, SYNTHIA_KNOWN_IDS, "SYNTHIA class id")


def scan_synthia(root: str | Path, list_file: str | Path | None = None) -> PairScan:
    """Pairs ``RGB/X.png`` with ``GT/LABELS/X.png``; names are the file names ("0000001.png"), sorted."""
    root = Path(root)
    scan = scan_same_names(root / "RGB", root / "GT" / "LABELS", "SYNTHIA", root, LAYOUT.format(root=root))
    return select_listed(scan, list_file, str(root / "RGB"))


class SYNTHIA(PairedDataset):
    """SYNTHIA-RAND-CITYSCAPES source domain, 16 classes by default (train 16 and report 16/13, as
    DADA ``dada/dataset/synthia.py``); ``protocol=CITYSCAPES19`` gives the 19-class table some repos use.

    Example::

        ds = SYNTHIA("data/synthia", train_transform(size=(760, 1280), normalization="caffe_bgr"))
        image, label, meta = ds[0]   # label values in 0..15 or 255
    """

    def __init__(
        self,
        root: str | Path,
        transform: Transform | None = None,
        protocol: Protocol = SYNTHIA16,
        list_file: str | Path | None = None,
    ):
        self.root = Path(root)
        super().__init__(
            scan_synthia(root, list_file),
            synthia_label_map(protocol),
            protocol,
            transform,
            read_raw_label=read_synthia_label,
        )
