"""Evaluation preprocessing as data: resize shorter side, center crop, normalise.

A :class:`Preprocessing` travels with the weights (each model family builds it from its
library's own config, in the family module) or with a model spec (the paper's own recipe)
and is recorded as JSON with every run. It is applied on the device to decoded uint8 images,
so one decode serves every model and view.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch / torchvision are imported where images are transformed
    import torch
    from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
#: ``shorter``: resize the shorter side to ``resize_size``, center-crop ``crop_size`` (the
#: usual ImageNet recipe); ``exact``: resize the whole image to ``crop_size`` x ``crop_size``
#: (no crop; nothing at all when it already has that size), as model-vs-human feeds its
#: 224 px stimuli.
RESIZE_MODES = ("shorter", "exact")


def _tf():  # type: ignore[no-untyped-def]
    import torchvision.transforms.v2.functional as TF

    return TF


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize_size``, center-crop ``crop_size``, normalise
    (``resize_mode='exact'``: resize to ``crop_size`` x ``crop_size``, no crop).

    ``source`` says where the recipe comes from (e.g. ``timm pretrained_cfg``).
    """

    resize_size: int
    crop_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    antialias: bool = True
    source: str = ""
    resize_mode: str = "shorter"

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"Unsupported interpolation {self.interpolation!r}; "
                f"use one of {sorted(_INTERPOLATIONS)}"
            )
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.crop_size > self.resize_size:
            raise ValueError(f"crop_size {self.crop_size} exceeds resize_size {self.resize_size}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), recorded with each run."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def interpolation_mode(self) -> InterpolationMode:
        """torchvision's enum for :attr:`interpolation`."""
        from torchvision.transforms import InterpolationMode

        return InterpolationMode(self.interpolation)

    def native(self, source: str) -> Preprocessing:
        """This recipe's normalisation with ``resize_mode='exact'`` at its input size."""
        return replace(self, resize_size=self.crop_size, resize_mode="exact", source=source)


def _levels_resize(img: torch.Tensor, height: int, width: int, pp: Preprocessing) -> torch.Tensor:
    """PIL's resampling on float levels: the width pass, then the height pass, each rounded
    half up and clamped to 0..255 as PIL does between its passes (its 8-bit intermediate).

    One antialiased pass over both axes (what torch computes for float or CUDA input) differs
    from PIL by up to 10 levels for bicubic; these two passes stay within one level.
    """
    import torch
    import torch.nn.functional as F

    x = img if img.is_floating_point() else img.to(torch.float32)
    batched = x.ndim == 4
    x = x if batched else x[None]
    mode = pp.interpolation
    if mode == "nearest":
        x = F.interpolate(x, size=(height, width), mode="nearest")
        return x if batched else x[0]
    kwargs = {"mode": mode, "align_corners": False, "antialias": pp.antialias}
    if x.shape[-1] != width:
        x = F.interpolate(x, size=(x.shape[-2], width), **kwargs).add_(0.5).floor_().clamp_(0, 255)
    if x.shape[-2] != height:
        x = F.interpolate(x, size=(height, width), **kwargs).add_(0.5).floor_().clamp_(0, 255)
    return x if batched else x[0]


def resize_to(img: torch.Tensor, height: int, width: int, pp: Preprocessing) -> torch.Tensor:
    """Resize ``[..., C, H, W]`` image levels to ``height`` x ``width`` with the recipe's
    interpolation, as PIL resamples.

    uint8 on the CPU takes torchvision's native uint8 kernels (built to match PIL); float
    levels (0..255) on any device, and uint8 elsewhere (CUDA), take :func:`_levels_resize`.
    The result holds levels: uint8 for uint8 CPU input, else float32.
    """
    if tuple(img.shape[-2:]) == (height, width):
        return img
    if img.dtype.is_floating_point or img.device.type != "cpu":
        return _levels_resize(img, height, width, pp)
    return _tf().resize(
        img, [height, width], interpolation=pp.interpolation_mode, antialias=pp.antialias
    )


def shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Output size when the shorter side becomes ``size``: the longer side is
    ``int(size * long / short)``, as torchvision's ``Resize(int)`` does."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def resize_shorter(img: torch.Tensor, size: int, pp: Preprocessing) -> torch.Tensor:
    """Resize ``[..., C, H, W]`` image levels so that the shorter side is ``size``
    (:func:`shorter_side_size`, :func:`resize_to`)."""
    h, w = shorter_side_size(int(img.shape[-2]), int(img.shape[-1]), size)
    return resize_to(img, h, w, pp)


def resize_exact(img: torch.Tensor, height: int, width: int, pp: Preprocessing) -> torch.Tensor:
    """Resize ``[..., C, H, W]`` image levels to exactly ``height`` x ``width``."""
    return resize_to(img, height, width, pp)


def center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """Center crop to ``size`` x ``size`` (torchvision's rounding; zero-pads a smaller image)."""
    return _tf().center_crop(img, [size, size])


def crop(img: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The window ``[top, top + height) x [left, left + width)`` of ``[..., C, H, W]``; parts
    outside the image are zeros (as PIL's ``Image.crop``)."""
    return _tf().crop(img, top, left, height, width)


@functools.lru_cache(maxsize=64)
def _normalisation(
    mean: tuple[float, ...], std: tuple[float, ...], device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std as [C, 1, 1] float32 tensors on ``device``, built once per device."""
    import torch

    m = torch.tensor(mean, dtype=torch.float32, device=device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(-1, 1, 1)
    return m, s


def to_normalized_float(img: torch.Tensor, pp: Preprocessing) -> torch.Tensor:
    """``[..., C, H, W]`` image levels (uint8, or float 0..255 after resampling) ->
    normalised float32: ``(levels / 255 - mean) / std``."""
    import torch

    x = img.to(torch.float32) / 255.0
    mean, std = _normalisation(pp.mean, pp.std, str(x.device))
    return (x - mean) / std


def standard_transform(img: torch.Tensor, pp: Preprocessing) -> torch.Tensor:
    """The model's evaluation transform on ``[..., C, H, W]`` image levels (one image or a
    batch of one size) -> normalised float32."""
    if pp.resize_mode == "exact":
        c = pp.crop_size
        same = tuple(img.shape[-2:]) == (c, c)
        return to_normalized_float(img if same else resize_exact(img, c, c, pp), pp)
    resized = resize_shorter(img, pp.resize_size, pp)
    return to_normalized_float(center_crop(resized, pp.crop_size), pp)
