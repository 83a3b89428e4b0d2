"""Evaluation preprocessing as data: resize shorter side, center crop, normalise.

A :class:`Preprocessing` travels with the weights (timm pretrained config, open_clip
preprocess config) or with a model spec (the paper's own recipe) and is recorded as JSON
with every run. It is applied on the device to decoded uint8 images, so one decode serves
every model and view.
"""

from __future__ import annotations

import json
import math
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

    @property
    def crop_ratio(self) -> float:
        """crop_size / resize_size (timm's crop_pct)."""
        return self.crop_size / self.resize_size

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), recorded with each run."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def with_sizes(self, resize_size: int, crop_size: int) -> Preprocessing:
        """The same recipe at other sizes."""
        return replace(self, resize_size=resize_size, crop_size=crop_size)

    @property
    def interpolation_mode(self) -> InterpolationMode:
        """torchvision's enum for :attr:`interpolation`."""
        from torchvision.transforms import InterpolationMode

        return InterpolationMode(self.interpolation)

    def native(self, source: str) -> Preprocessing:
        """This recipe's normalisation with ``resize_mode='exact'`` at its input size."""
        return replace(self, resize_size=self.crop_size, resize_mode="exact", source=source)


def from_timm_config(cfg: dict[str, Any]) -> Preprocessing:
    """Build from a timm data config (``timm.data.resolve_data_config`` output).

    Mirrors timm's eval transform: ``scale_size = floor(img_size / crop_pct)``, center crop.
    """
    crop_mode = cfg.get("crop_mode", "center")
    if crop_mode != "center":
        raise ValueError(f"timm crop_mode {crop_mode!r} is not supported (only 'center')")
    crop = int(cfg["input_size"][-1])
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    return Preprocessing(
        resize_size=math.floor(crop / crop_pct),
        crop_size=crop,
        interpolation=str(cfg.get("interpolation", "bicubic")),
        mean=tuple(float(x) for x in cfg["mean"]),  # type: ignore[arg-type]
        std=tuple(float(x) for x in cfg["std"]),  # type: ignore[arg-type]
        source="timm pretrained_cfg (resolve_data_config)",
    )


def from_open_clip_config(cfg: dict[str, Any]) -> Preprocessing:
    """Build from ``open_clip.get_model_preprocess_cfg`` output (resize_mode 'shortest')."""
    mode = cfg.get("resize_mode", "shortest")
    if mode != "shortest":
        raise ValueError(f"open_clip resize_mode {mode!r} is not supported (only 'shortest')")
    size = cfg["size"]
    size = int(size if isinstance(size, int) else size[-1])
    return Preprocessing(
        resize_size=size,
        crop_size=size,
        interpolation=str(cfg.get("interpolation", "bicubic")),
        mean=tuple(float(x) for x in cfg["mean"]),  # type: ignore[arg-type]
        std=tuple(float(x) for x in cfg["std"]),  # type: ignore[arg-type]
        source="open_clip preprocess config",
    )


def resize_shorter(img: torch.Tensor, size: int, pp: Preprocessing) -> torch.Tensor:
    """Resize a uint8/float CHW image so that its shorter side is ``size``.

    The longer side is ``int(size * long / short)``, as torchvision's ``Resize(int)`` does.
    """
    return _tf().resize(img, [size], interpolation=pp.interpolation_mode, antialias=pp.antialias)


def resize_exact(img: torch.Tensor, height: int, width: int, pp: Preprocessing) -> torch.Tensor:
    """Resize a CHW image to exactly ``height`` x ``width`` (the recipe's interpolation)."""
    return _tf().resize(
        img, [height, width], interpolation=pp.interpolation_mode, antialias=pp.antialias
    )


def center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """Center crop to ``size`` x ``size`` (torchvision's rounding; zero-pads a smaller image)."""
    return _tf().center_crop(img, [size, size])


def crop(img: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The window ``[top, top + height) x [left, left + width)`` of a CHW image; parts
    outside the image are zeros (as PIL's ``Image.crop``)."""
    return _tf().crop(img, top, left, height, width)


def to_normalized_float(img: torch.Tensor, pp: Preprocessing) -> torch.Tensor:
    """uint8 [0,255] (or float [0,255] after resampling) CHW -> normalised float32 CHW."""
    import torch

    x = img.to(torch.float32)
    if img.dtype == torch.uint8:
        x = x / 255.0
    mean = torch.tensor(pp.mean, device=x.device, dtype=x.dtype).view(-1, 1, 1)
    std = torch.tensor(pp.std, device=x.device, dtype=x.dtype).view(-1, 1, 1)
    return (x - mean) / std


def standard_transform(img: torch.Tensor, pp: Preprocessing) -> torch.Tensor:
    """The model's evaluation transform on one uint8 CHW image -> normalised float CHW."""
    if pp.resize_mode == "exact":
        c = pp.crop_size
        same = tuple(img.shape[-2:]) == (c, c)
        return to_normalized_float(img if same else resize_exact(img, c, c, pp), pp)
    resized = resize_shorter(img, pp.resize_size, pp)
    return to_normalized_float(center_crop(resized, pp.crop_size), pp)
