"""Paired transforms on ``(PIL RGB image, (H, W) uint8 label)`` and the two presets every chapter uses.

Rules: images are resampled bicubic, labels nearest (no new ids appear); padding fills the image with 0 and the
label with 255 (ignore); colour transforms touch the image only. Sizes are ``(height, width)`` as in torch, so the
seeds' 1280×720 (W×H) source resize is ``Resize((720, 1280))``. Random transforms draw from torch's global RNG,
which the trainer seeds (and DataLoader reseeds per worker), so a seed reproduces a run.

The order of the SDCA stage-3 colour augmentation is jitter → grayscale → blur (SDCA
``core/datasets/build.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from ..config import IGNORE_INDEX

Size = tuple[int, int]
LabelSize = Literal["same"] | Size | None

#: Normalisation modes: (to BGR?, scale of the [0, 1] input, mean, std), as the seeds' dataset classes
#: (AdaptSegNet ``dataset/gta5_dataset.py``) and SDCA ``core/datasets/transform.py`` do.
NORMALIZATIONS: dict[str, tuple[bool, float, tuple[float, float, float], tuple[float, float, float]]] = {
    # DeepLab-v2 Caffe weights (AdaptSegNet, ADVENT, BAFFT, UDAclustering): BGR, 0..255, Caffe mean, no std.
    "caffe_bgr": (True, 255.0, (104.00698793, 116.66876762, 122.67891434), (1.0, 1.0, 1.0)),
    # torchvision ImageNet weights (SDCA ResNet-101): RGB in [0, 1], ImageNet mean and std.
    "imagenet_rgb": (False, 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # Caffe-converted VGG-16 (SDCA VGG): BGR, 0..255, VGG mean, no std.
    "vgg_bgr255": (True, 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0)),
}


def _check_size(size: Sequence[int], what: str) -> Size:
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"{what} must be (height, width) with positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def resize_image(image: Image.Image, size: Size) -> Image.Image:
    """Bicubic resize to (h, w)."""
    return image.resize((size[1], size[0]), Image.Resampling.BICUBIC)


def resize_label(label: np.ndarray, size: Size) -> np.ndarray:
    """Nearest resize of a uint8 label to (h, w): only ids already present can appear."""
    return np.asarray(Image.fromarray(label).resize((size[1], size[0]), Image.Resampling.NEAREST))


class Compose:
    """Apply paired transforms in order."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, image, label):
        for t in self.transforms:
            image, label = t(image, label)
        return image, label

    def __repr__(self) -> str:
        return "Compose(\n" + "".join(f"  {t!r},\n" for t in self.transforms) + ")"


class Resize:
    """Resize the image to `size` (bicubic); the label follows `label_size` (nearest).

    label_size: "same" resizes the label with the image; None keeps the label at its full resolution (the benchmark's
    evaluation); (h, w) resizes it to that size (e.g. UDAclustering's half-resolution evaluation).
    `size=None` leaves the image alone.
    """

    def __init__(self, size: Size | None, label_size: LabelSize = "same"):
        self.size = None if size is None else _check_size(size, "Resize size")
        self.label_size = label_size if label_size in ("same", None) else _check_size(label_size, "label_size")

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[Image.Image, np.ndarray]:
        if self.size is not None:
            image = resize_image(image, self.size)
        target = self.size if self.label_size == "same" else self.label_size
        if target is not None and label.shape != target:
            label = resize_label(label, target)
        return image, label

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, label_size={self.label_size!r})"


class FourierStyle:
    """FDA (:mod:`udalib.data.fda`): the image takes the low-frequency amplitude of a random image of `targets` (an
    indexable collection of PIL images, e.g. the target train set), resized to it; the label is untouched."""

    def __init__(self, targets: Sequence[Image.Image], beta: float):
        if len(targets) == 0:
            raise ValueError("FDA needs target images to borrow their spectrum from; the target set is empty")
        self.targets, self.beta = targets, beta

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[Image.Image, np.ndarray]:
        from .fda import fda_source_to_target

        other = self.targets[int(torch.randint(len(self.targets), ()).item())]
        other = resize_image(other, (image.height, image.width))
        src = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)
        tgt = torch.from_numpy(np.asarray(other, dtype=np.float32)).permute(2, 0, 1)
        out = fda_source_to_target(src, tgt, self.beta).clamp(0, 255).round().to(torch.uint8)
        return Image.fromarray(out.permute(1, 2, 0).numpy()), label

    def __repr__(self) -> str:
        return f"FourierStyle(beta={self.beta}, {len(self.targets)} target images)"


class RandomScale:
    """Scale image and label by s ~ U(lo, hi) (SDCA self-training: 0.5–1.5)."""

    def __init__(self, lo: float, hi: float):
        if not 0 < lo <= hi:
            raise ValueError(f"RandomScale needs 0 < lo <= hi, got ({lo}, {hi})")
        self.lo, self.hi = lo, hi

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[Image.Image, np.ndarray]:
        s = self.lo + (self.hi - self.lo) * torch.rand(()).item()
        w, h = image.size
        size = (max(1, round(h * s)), max(1, round(w * s)))
        return resize_image(image, size), resize_label(label, size)

    def __repr__(self) -> str:
        return f"RandomScale({self.lo}, {self.hi})"


class RandomCrop:
    """Random (h, w) crop; smaller inputs are first padded at the bottom/right (image 0, label 255)."""

    def __init__(self, size: Size):
        self.size = _check_size(size, "RandomCrop size")

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[Image.Image, np.ndarray]:
        ch, cw = self.size
        w, h = image.size
        if h < ch or w < cw:
            padded = Image.new("RGB", (max(w, cw), max(h, ch)), (0, 0, 0))
            padded.paste(image, (0, 0))
            image = padded
            full = np.full((max(h, ch), max(w, cw)), IGNORE_INDEX, dtype=np.uint8)
            full[:h, :w] = label
            label = full
            w, h = image.size
        top = int(torch.randint(0, h - ch + 1, ()).item())
        left = int(torch.randint(0, w - cw + 1, ()).item())
        return image.crop((left, top, left + cw, top + ch)), np.ascontiguousarray(
            label[top : top + ch, left : left + cw]
        )

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class HorizontalFlip:
    """Mirror image and label with probability p."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[Image.Image, np.ndarray]:
        if torch.rand(()).item() < self.p:
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), np.ascontiguousarray(label[:, ::-1])
        return image, label

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p})"


class _ImageOnly:
    """Wrap a torchvision PIL transform so that it leaves the label untouched."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[Image.Image, np.ndarray]:
        return self.transform(image), label

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"


class ColorJitter(_ImageOnly):
    """Brightness, contrast, saturation, hue jitter, always applied (SDCA: 0.5, 0.5, 0.5, 0.2)."""

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float):
        super().__init__(T.ColorJitter(brightness, contrast, saturation, hue))


class RandomGrayscale:
    """Gray (kept as 3 channels) with probability p (SDCA: 0.2)."""

    def __init__(self, p: float = 0.2):
        self.p = p

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[Image.Image, np.ndarray]:
        if torch.rand(()).item() < self.p:
            image = TF.rgb_to_grayscale(image, num_output_channels=3)
        return image, label

    def __repr__(self) -> str:
        return f"RandomGrayscale(p={self.p})"


class GaussianBlur(_ImageOnly):
    """Gaussian blur with a kernel×kernel window and σ ~ U(sigma), always applied (SDCA: 3, (0.1, 2.0))."""

    def __init__(self, kernel: int = 3, sigma: tuple[float, float] = (0.1, 2.0)):
        super().__init__(T.GaussianBlur(kernel, sigma))


class ToTensor:
    """PIL RGB → float32 (3, H, W) in [0, 1]; uint8 label → int64 (H, W)."""

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[Tensor, Tensor]:
        array = np.asarray(image, dtype=np.uint8)
        image_t = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
        return image_t, torch.from_numpy(np.asarray(label, dtype=np.int64))

    def __repr__(self) -> str:
        return "ToTensor()"


def _mode(mode: str):
    try:
        bgr, scale, mean, std = NORMALIZATIONS[mode]
    except KeyError:
        raise ValueError(f"unknown normalization {mode!r}; expected one of {sorted(NORMALIZATIONS)}") from None
    return bgr, scale, torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)


class Normalize:
    """RGB [0, 1] tensor → the network's input convention (a key of NORMALIZATIONS); the label passes through."""

    def __init__(self, mode: str):
        self.mode = mode
        self.bgr, self.scale, self.mean, self.std = _mode(mode)

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        if self.bgr:
            image = image.flip(0)  # (3, H, W): RGB → BGR
        return (image * self.scale - self.mean) / self.std, label

    def __repr__(self) -> str:
        return f"Normalize({self.mode!r})"


def denormalize(image: Tensor, mode: str) -> np.ndarray:
    """Invert :class:`Normalize` for display: (3, H, W) network input → (H, W, 3) uint8 RGB."""
    bgr, scale, mean, std = _mode(mode)
    x = (image.detach().cpu().float() * std + mean) / scale
    if bgr:
        x = x.flip(0)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def train_transform(
    *,
    size: Size | None,
    normalization: str,
    flip: bool = False,
    scale: tuple[float, float] | None = None,
    crop: Size | None = None,
    color_aug: bool = False,
    label_size: LabelSize = "same",
    fda: FourierStyle | None = None,
) -> Compose:
    """Training pipeline: resize → random scale → random crop → flip → colour (jitter, gray, blur) → tensor.

    Seeds' source: ``train_transform(size=(720, 1280), normalization="caffe_bgr")`` (a full-image resize).
    SDCA stage 3 source adds ``color_aug=True``; SDCA self-training uses ``size=None, scale=(0.5, 1.5),
    crop=(512, 1024), flip=True``. `label_size` other than "same" resizes the label after the image resize and
    cannot be combined with scale or crop. `fda` (a :class:`FourierStyle`) gives the image a target image's low
    frequencies after the resize.
    """
    if label_size != "same" and (scale is not None or crop is not None):
        raise ValueError("label_size must be 'same' when scale or crop is used (the label would no longer align)")
    steps: list = []
    if size is not None or label_size != "same":
        steps.append(Resize(size, label_size))
    if fda is not None:  # at the training size, as the FDA code does
        steps.append(fda)
    if scale is not None:
        steps.append(RandomScale(*scale))
    if crop is not None:
        steps.append(RandomCrop(crop))
    if flip:
        steps.append(HorizontalFlip(0.5))
    if color_aug:  # SDCA stage 3 (core/datasets/build.py), in this order
        steps += [ColorJitter(0.5, 0.5, 0.5, 0.2), RandomGrayscale(0.2), GaussianBlur(3, (0.1, 2.0))]
    return Compose(steps + [ToTensor(), Normalize(normalization)])


#: The named training pipelines of the labelled stream (``DataConfig.source_aug`` for source images,
#: ``DataConfig.labelled_aug`` for target-train images with labels) and what each does.
PIPELINES: dict[str, str] = {
    "none": "resize to the training size",
    "sdca_color": "resize, then colour jitter, grayscale and blur (SDCA stage 3's source images)",
    "fda": "resize, then the low frequencies of a random target image (FDA, parameter fda_beta)",
    "scale_crop": "random scale 0.5-1.5 of the full image, crop at the training size, flip (SDCA self-training)",
}


def pipeline_transform(
    name: str,
    *,
    size: Size,
    normalization: str,
    fda_images: Sequence[Image.Image] = (),
    fda_beta: float = 0.01,
) -> Compose:
    """The training transform of the pipeline `name` (a key of :data:`PIPELINES`) at the training size `size`.

    `fda_images` (e.g. the target train set's images) lend their spectrum to the "fda" pipeline, with window
    `fda_beta`; the other pipelines do not read them. Example::

        pipeline_transform("sdca_color", size=(720, 1280), normalization="imagenet_rgb")
    """
    if name not in PIPELINES:
        raise ValueError(f"unknown data pipeline {name!r}; expected one of {', '.join(PIPELINES)}")
    if name == "scale_crop":
        return train_transform(size=None, normalization=normalization, scale=(0.5, 1.5), crop=size, flip=True)
    fda = FourierStyle(fda_images, fda_beta) if name == "fda" else None
    return train_transform(size=size, normalization=normalization, color_aug=name == "sdca_color", fda=fda)


def eval_transform(*, size: Size | None, normalization: str, label_size: LabelSize = None) -> Compose:
    """Evaluation pipeline: image resized to `size` (benchmark: (512, 1024)); label kept at full resolution.

    label_size=None is the benchmark protocol (2048×1024 labels); "same" or (h, w) resize it (nearest).
    """
    return Compose([Resize(size, label_size), ToTensor(), Normalize(normalization)])
