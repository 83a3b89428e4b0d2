"""Views: named ways of turning one decoded image into a model input.

``standard`` is the model's own evaluation preprocessing. View families register a parser
under their prefix in :data:`VIEW_FAMILIES`; a view's name is ``<family>:<argument>``.

The invariance families follow the paper's code (``utils/transforms.py`` and
``inference/invariance.py`` of kirill-vish/Beyond-INet), with the model's own resize size
``R`` (:attr:`Preprocessing.resize_size`), input size ``C`` (``crop_size``) and interpolation:

* ``scale:<s>``: resize the shorter side to ``floor(s * R)``, center-crop ``C``.
* ``shift:<n>``: the standard crop's window in original-image pixels (side ``C * short / R``)
  moved by ``n`` original pixels along the longer side (down for square images), cropped
  from the original image (zeros outside it, no clamping) and resized to ``C x C``.
* ``resolution:<r>``: resize the shorter side to ``floor(r * R / C)``, center-crop ``r``;
  the model runs at ``r x r``.

Every transform takes image levels ``[..., C, H, W]`` on any device — one image, or a batch
of images of one size (the single decode: uint8, or float 0..255) — and returns normalised
float32 on the same device; resampling matches PIL on every device
(:func:`~beyond_inet.transforms.preprocess.resize_to`). The default grids are data
(:data:`VIEW_GRIDS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from beyond_inet.registry import Registry
from beyond_inet.transforms.preprocess import (
    Preprocessing,
    center_crop,
    crop,
    resize_exact,
    resize_shorter,
    standard_transform,
    to_normalized_float,
)

if TYPE_CHECKING:
    import torch

Transform = Callable[["torch.Tensor", Preprocessing], "torch.Tensor"]


def _same_size(pp: Preprocessing) -> int:
    return pp.crop_size


@dataclass(frozen=True)
class View:
    """A named transform ``(image levels [..., C, H, W], preprocessing) -> normalised float``.

    ``input_size`` gives the side of the square the model runs at for this view.
    """

    name: str
    transform: Transform = field(compare=False)
    input_size: Callable[[Preprocessing], int] = field(default=_same_size, compare=False)


class ViewError(ValueError):
    """A view name whose argument is malformed (the message shows a valid example)."""


STANDARD = View("standard", standard_transform)

#: The paper's grids (Fig. "invariance"): view family -> arguments. The CLI's
#: ``--scales`` / ``--shifts`` / ``--resolutions`` default to these.
VIEW_GRIDS: dict[str, tuple[float, ...]] = {
    "scale": (1, 1.25, 1.5, 2, 3),
    "shift": (0, 5, 30, 75, 100),
    "resolution": (112, 224, 336, 512, 640),
}

#: The largest model input side a resolution view may ask for (a typo guard).
MAX_RESOLUTION = 4096

# --------------------------------------------------------------------------- geometry


def format_number(x: float) -> str:
    """Canonical text of a grid value: ``1.0 -> '1'``, ``1.25 -> '1.25'``."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def scaled_resize(pp: Preprocessing, s: float) -> int:
    """Shorter side for ``scale:<s>``: ``floor(s * resize_size)`` (the paper's ``int()``)."""
    return math.floor(s * pp.resize_size + 1e-9)


def resolution_resize(pp: Preprocessing, r: int) -> int:
    """Shorter side for ``resolution:<r>``: ``floor(r * resize_size / crop_size)``."""
    return r * pp.resize_size // pp.crop_size


def shift_window(height: int, width: int, pp: Preprocessing, n: int) -> tuple[int, int, int]:
    """``(top, left, side)`` in original pixels of the standard crop moved by ``n`` pixels.

    The standard crop (shorter side resized to R, center crop C) covers a square of side
    ``C * short / R`` of the original image; it moves along the longer side (vertically
    when ``height >= width``). Same arithmetic and ``int()`` truncation as the paper's
    ``CropShift``; the window is not clamped to the image.
    """
    big, small = float(pp.resize_size), float(pp.crop_size)
    if width > height:
        top = ((big - small) / 2 * height) / big
        left = (((width / height * big) - small) / 2 * height) / big + n
        side = small * height / big
    else:
        top = (((height / width * big) - small) / 2 * width) / big + n
        left = ((big - small) / 2 * width) / big
        side = small * width / big
    return int(top), int(left), int(side)


# --------------------------------------------------------------------------- transforms


def scale_transform(img: torch.Tensor, pp: Preprocessing, s: float) -> torch.Tensor:
    """``scale:<s>``: resize shorter side to ``floor(s * R)``, center-crop C, normalise."""
    resized = resize_shorter(img, scaled_resize(pp, s), pp)
    return to_normalized_float(center_crop(resized, pp.crop_size), pp)


def shift_transform(img: torch.Tensor, pp: Preprocessing, n: int) -> torch.Tensor:
    """``shift:<n>``: crop :func:`shift_window` from the original, resize to C x C."""
    top, left, side = shift_window(int(img.shape[-2]), int(img.shape[-1]), pp, n)
    window = crop(img, top, left, side, side)
    return to_normalized_float(resize_exact(window, pp.crop_size, pp.crop_size, pp), pp)


def resolution_transform(img: torch.Tensor, pp: Preprocessing, r: int) -> torch.Tensor:
    """``resolution:<r>``: resize shorter side to ``floor(r * R / C)``, center-crop r."""
    resized = resize_shorter(img, resolution_resize(pp, r), pp)
    return to_normalized_float(center_crop(resized, r), pp)


def _fixed_size(r: int, _pp: Preprocessing) -> int:
    return r


# --------------------------------------------------------------------------- parsing


def _number(family: str, arg: str, example: str, integer: bool) -> float:
    kind = "an integer" if integer else "a number"
    bad = ViewError(f"Invalid view {family}:{arg!r}: {family} needs {kind}, e.g. {example!r}.")
    if not arg:
        raise bad
    try:
        value = int(arg) if integer else float(arg)
    except ValueError:
        raise bad from None
    if not math.isfinite(value):
        raise bad
    return value


def scale_view(s: float) -> View:
    """The ``scale:<s>`` view (``s > 0``)."""
    if not (math.isfinite(s) and s > 0):
        raise ViewError(f"Invalid view scale:{s}: the scale must be > 0, e.g. 'scale:1.5'.")
    return View(f"scale:{format_number(s)}", partial(scale_transform, s=float(s)))


def shift_view(n: int) -> View:
    """The ``shift:<n>`` view (``n`` original pixels, may be negative)."""
    return View(f"shift:{int(n)}", partial(shift_transform, n=int(n)))


def resolution_view(r: int) -> View:
    """The ``resolution:<r>`` view (``1 <= r <=`` :data:`MAX_RESOLUTION`)."""
    if not 1 <= r <= MAX_RESOLUTION:
        raise ViewError(
            f"Invalid view resolution:{r}: the resolution must be in "
            f"1..{MAX_RESOLUTION}, e.g. 'resolution:336'."
        )
    return View(
        f"resolution:{int(r)}",
        partial(resolution_transform, r=int(r)),
        partial(_fixed_size, int(r)),
    )


def _parse_standard(arg: str) -> View:
    if arg:
        raise ViewError(f"Invalid view standard:{arg!r}: 'standard' takes no argument.")
    return STANDARD


#: prefix -> parser taking the text after ``prefix:`` and returning a View.
VIEW_FAMILIES: Registry[Callable[[str], View]] = Registry("view family")
VIEW_FAMILIES.add("standard", _parse_standard)
VIEW_FAMILIES.add("scale", lambda a: scale_view(_number("scale", a, "scale:1.5", False)))
VIEW_FAMILIES.add("shift", lambda a: shift_view(int(_number("shift", a, "shift:30", True))))
VIEW_FAMILIES.add(
    "resolution", lambda a: resolution_view(int(_number("resolution", a, "resolution:336", True)))
)


def parse_view(name: str) -> View:
    """``'standard'`` or ``'<family>:<arg>'`` -> View; unknown families suggest close names,
    malformed arguments raise :class:`ViewError`."""
    family, _, arg = name.strip().partition(":")
    return VIEW_FAMILIES.get(family)(arg.strip())


def grid_views(grids: Mapping[str, Sequence[float]]) -> tuple[str, ...]:
    """Family -> values (e.g. :data:`VIEW_GRIDS`) -> canonical view names, in order,
    duplicates dropped; every name is validated."""
    names: list[str] = []
    for family, values in grids.items():
        for v in values:
            name = parse_view(f"{family}:{format_number(v)}").name
            if name not in names:
                names.append(name)
    return tuple(names)
