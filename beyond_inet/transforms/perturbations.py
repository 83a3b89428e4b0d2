"""Perturbations for the live playground: rotation and ImageNet-C corruptions.

Corruptions follow Hendrycks & Dietterich (ICLR 2019), ``make_imagenet_c.py``: same names,
same five severity parameters (:data:`SEVERITY_PARAMS`, data), same arithmetic on float
images in [0, 1], same final ``np.uint8`` truncation the published dataset was saved with.
ImageNet-C corrupts 224 x 224 center crops (torchvision ``Resize(256)``, ``CenterCrop(224)``
on PIL images), so :func:`corrupt` does that first (:func:`imagenet_c_input`); the model's own
preprocessing then runs on the corrupted crop, as when evaluating on ImageNet-C files.
``pixelate`` scales by the crop's size where Hendrycks hard-codes 224 (identical on 224 crops);
``defocus_blur`` uses scipy's ``correlate`` with ``mode='mirror'`` (OpenCV's default
BORDER_REFLECT_101) in place of ``cv2.filter2D`` / ``cv2.GaussianBlur``.
Randomness comes from a seeded ``numpy`` generator, so a given seed is reproducible.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from beyond_inet.registry import Registry

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

#: Hendrycks' ImageNet-C parameters per corruption, index = severity - 1.
SEVERITY_PARAMS: dict[str, tuple[Any, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "jpeg_compression": (25, 18, 15, 10, 7),
}

#: ImageNet-C's base crop: resize the shorter side to 256 (bilinear), center-crop 224.
IMAGENET_C_RESIZE = 256
IMAGENET_C_CROP = 224

#: Sweep grids (data): rotation in degrees, corruption severities (0 = the clean crop).
ROTATION_GRID: tuple[float, ...] = (0, 15, 30, 45, 90, 135, 180)
SEVERITY_GRID: tuple[int, ...] = (0, *SEVERITIES)

CorruptFn = Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """An ImageNet-C corruption: ``fn(HWC uint8, severity parameter, rng) -> float [0, 255]``."""

    name: str
    category: str
    fn: CorruptFn

    def param(self, severity: int) -> Any:
        """Hendrycks' parameter for ``severity`` (1-5); other severities are a ValueError."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of 1-5, got {severity!r}")
        return SEVERITY_PARAMS[self.name][severity - 1]


CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def _corruption(category: str) -> Callable[[CorruptFn], CorruptFn]:
    def deco(fn: CorruptFn) -> CorruptFn:
        CORRUPTIONS.add(fn.__name__, Corruption(fn.__name__, category, fn))
        return fn

    return deco


@_corruption("noise")
def gaussian_noise(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """Additive N(0, c) noise on [0, 1] pixels."""
    x = img / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


@_corruption("noise")
def shot_noise(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson noise: ``poisson(x * c) / c``."""
    x = img / 255.0
    return np.clip(rng.poisson(x * c) / c, 0, 1) * 255


@_corruption("noise")
def impulse_noise(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise on a fraction ``c`` of the values (skimage ``random_noise``)."""
    from skimage.util import random_noise

    x = random_noise(img / 255.0, mode="s&p", amount=c, rng=rng)
    return np.clip(x, 0, 1) * 255


def _gaussian_kernel_1d(ksize: int, sigma: float) -> np.ndarray:
    """OpenCV's ``getGaussianKernel(ksize, sigma)`` for sigma > 0."""
    t = np.arange(ksize) - (ksize - 1) / 2
    k = np.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


def disk(radius: int, alias_blur: float = 0.1) -> np.ndarray:
    """Hendrycks' anti-aliased disk kernel (float32, as ``make_imagenet_c.disk``)."""
    from scipy.ndimage import correlate1d

    if radius <= 8:
        coords, ksize = np.arange(-8, 8 + 1), 3
    else:
        coords, ksize = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(coords, coords)
    aliased = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    aliased /= np.sum(aliased)
    g = _gaussian_kernel_1d(ksize, alias_blur)
    out = correlate1d(aliased, g, axis=0, mode="mirror")
    return correlate1d(out, g, axis=1, mode="mirror").astype(np.float32)


@_corruption("blur")
def defocus_blur(img: np.ndarray, c: tuple[int, float], rng: np.random.Generator) -> np.ndarray:
    """Convolution with an anti-aliased disk of radius ``c[0]`` (alias blur ``c[1]``)."""
    from scipy.ndimage import correlate

    x = img / 255.0
    kernel = disk(radius=c[0], alias_blur=c[1])
    channels = [correlate(x[:, :, d], kernel, mode="mirror") for d in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 1) * 255


@_corruption("weather")
def brightness(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """Add ``c`` to the HSV value channel."""
    from skimage.color import hsv2rgb, rgb2hsv

    x = rgb2hsv(img / 255.0)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    return np.clip(hsv2rgb(x), 0, 1) * 255


@_corruption("digital")
def contrast(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """Scale each channel's deviation from its mean by ``c``."""
    x = img / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


@_corruption("digital")
def pixelate(img: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """Box-downsample by ``c`` and box-upsample back."""
    h, w = img.shape[:2]
    im = Image.fromarray(img).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(im.resize((w, h), Image.BOX))


@_corruption("digital")
def jpeg_compression(img: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
    """Re-encode as JPEG at quality ``c`` (PIL, in memory)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=c)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def corrupt_array(img: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Apply corruption ``name`` at ``severity`` (1-5) to an HWC uint8 RGB array.

    Returns HWC uint8 (``np.uint8`` truncation, as ImageNet-C was saved); same size.
    """
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HWC uint8 RGB array, got {img.dtype} {img.shape}")
    spec = CORRUPTIONS.get(name)
    out = spec.fn(img, spec.param(severity), np.random.default_rng(seed))
    return np.asarray(out).astype(np.uint8)


def _check_chw(img: torch.Tensor) -> None:
    if img.dtype != torch.uint8 or img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"expected a uint8 CHW RGB tensor, got {img.dtype} {tuple(img.shape)}")


def imagenet_c_input(img: torch.Tensor) -> torch.Tensor:
    """uint8 CHW -> ImageNet-C's 224 x 224 base crop (resize 256 bilinear, center crop)."""
    _check_chw(img)
    pil = TF.to_pil_image(img).convert("RGB")
    short = IMAGENET_C_RESIZE
    w, h = pil.size
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    pil = pil.resize(size, Image.BILINEAR)
    return TF.center_crop(TF.pil_to_tensor(pil), [IMAGENET_C_CROP, IMAGENET_C_CROP])


def corrupt(img: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """uint8 CHW image -> its ImageNet-C base crop with ``name`` at ``severity`` applied.

    ``severity`` 0 returns the clean base crop; 1-5 are Hendrycks' levels.
    """
    CORRUPTIONS.get(name)
    base = imagenet_c_input(img)
    if severity == 0:
        return base
    arr = corrupt_array(base.permute(1, 2, 0).numpy().copy(), name, severity, seed)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def rotate(img: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate a uint8 CHW image counter-clockwise about its center (bilinear, same size,
    corners filled black)."""
    _check_chw(img)
    if degrees % 360 == 0:
        return img
    return TF.rotate(img, float(degrees), interpolation=InterpolationMode.BILINEAR, fill=[0.0])


@dataclass(frozen=True)
class Perturbation:
    """A sweepable image perturbation: ``apply(uint8 CHW, value, seed) -> uint8 CHW``."""

    name: str
    label: str
    grid: tuple[float, ...]
    apply: Callable[[torch.Tensor, float, int], torch.Tensor]


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation")
PERTURBATIONS.add(
    "rotation",
    Perturbation(
        "rotation",
        "rotation (degrees)",
        ROTATION_GRID,
        lambda img, v, _seed: rotate(img, v),
    ),
)


def _corruption_perturbation(name: str) -> Perturbation:
    def apply(img: torch.Tensor, v: float, seed: int) -> torch.Tensor:
        return corrupt(img, name, int(v), seed)

    return Perturbation(name, f"{name} (severity)", SEVERITY_GRID, apply)


for _name in CORRUPTIONS:
    PERTURBATIONS.add(_name, _corruption_perturbation(_name))
