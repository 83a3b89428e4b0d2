"""Decoding: every image once, to 8-bit RGB and a uint8 CHW tensor; corrupt files are
reported, never fatal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from beyond_inet.datasets.base import Sample

if TYPE_CHECKING:
    import torch


def load_rgb(path: Path | str) -> Image.Image:
    """Open an image as 8-bit RGB: EXIF orientation applied; grayscale, palette, CMYK,
    alpha (composited on white) and 16-bit inputs converted. Raises on corrupt files."""
    with Image.open(path) as im:
        im.load()
        return to_rgb(im)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL image to 8-bit RGB (see :func:`load_rgb`)."""
    im = ImageOps.exif_transpose(im) or im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray((arr / hi * 255.0).round().clip(0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im.convert("RGBA"))
    return im.convert("RGB")


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 CHW tensor."""
    import torch

    return torch.from_numpy(np.array(im, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


@dataclass
class Decoded:
    """A decoded item: its index in the dataset's sample list and the image, or the error."""

    index: int
    image: torch.Tensor | None
    error: str | None = None


class DecodedImages:
    """A map-style dataset for ``torch.utils.data.DataLoader``: decodes each of the samples
    at ``indices`` (default: all) once to a uint8 CHW tensor; failures become
    ``Decoded.error``. Items carry their index into ``samples``. ``reader`` (a dataset's
    own, e.g. torchvision arrays) opens a sample as a PIL image instead of its file."""

    def __init__(
        self,
        samples: Sequence[Sample],
        indices: Sequence[int] | None = None,
        reader: Callable[[Sample], Image.Image] | None = None,
    ) -> None:
        self.indices = list(range(len(samples)) if indices is None else indices)
        self.reader = reader
        self.samples = [samples[i] for i in self.indices] if reader else []
        self.paths = [str(samples[i].path) for i in self.indices]

    def __len__(self) -> int:
        return len(self.paths)

    def _open(self, i: int) -> Image.Image:
        if self.reader is not None:
            return to_rgb(self.reader(self.samples[i]))
        return load_rgb(self.paths[i])

    def __getitem__(self, i: int) -> Decoded:
        try:
            return Decoded(self.indices[i], pil_to_tensor(self._open(i)))
        except Exception as e:
            return Decoded(self.indices[i], None, f"{type(e).__name__}: {e}")


class DecodedBatch(list[Decoded]):
    """A list of decoded items; DataLoader's ``pin_memory=True`` pins each image."""

    def pin_memory(self) -> DecodedBatch:
        """Pin every image tensor (called by the DataLoader's pinning thread)."""
        for d in self:
            if d.image is not None:
                d.image = d.image.pin_memory()
        return self


def collate_decoded(batch: list[Decoded]) -> DecodedBatch:
    """Keep variable-size images as a list (each model/view resizes on the device)."""
    return DecodedBatch(batch)
