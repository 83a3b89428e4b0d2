"""Decoding: every image once, to 8-bit RGB and a uint8 CHW tensor; corrupt files are
reported, never fatal."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from beyond_inet.datasets.base import Sample
from beyond_inet.settings import DECODERS

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
    """A decoded item: its index in the dataset's sample list and the image, or the error.

    With device decoding a baseline JPEG arrives still encoded (``encoded``: its bytes as a
    uint8 tensor, ``image`` None) and is decoded in a batch on the run's device
    (:func:`decode_on_device`)."""

    index: int
    image: torch.Tensor | None
    error: str | None = None
    encoded: torch.Tensor | None = None

    @property
    def ok(self) -> bool:
        """Decoded, or ready to be decoded on the device."""
        return self.image is not None or self.encoded is not None


def _device_decodable(path: str) -> bool:
    """Whether torchvision's JPEG decoder takes this file as PIL would: a JPEG (by its
    header, whatever its name) in RGB or grayscale (CMYK / YCCK stay with PIL)."""
    with Image.open(path) as im:
        return im.format == "JPEG" and im.mode in ("RGB", "L")


def read_encoded(path: str) -> torch.Tensor:
    """A file's bytes as a uint8 tensor (what torchvision's decoders take)."""
    import torch

    return torch.from_numpy(np.fromfile(path, dtype=np.uint8))


def decode_on_device(encoded: Sequence[torch.Tensor], device: str) -> list[torch.Tensor | str]:
    """Decode JPEG bytes in one batch on ``device`` -> uint8 CHW RGB tensors there (EXIF
    orientation applied, grayscale expanded to RGB, as :func:`load_rgb`). Where the batch
    call fails, each image is decoded alone; an image that still fails becomes its error
    text (the caller falls back to PIL)."""
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders for TorchCodec
        warnings.simplefilter("ignore", DeprecationWarning)
        return _decode_jpegs(encoded, device)


def _decode_jpegs(encoded: Sequence[torch.Tensor], device: str) -> list[torch.Tensor | str]:
    from torchvision.io import ImageReadMode, decode_jpeg

    def one(data: torch.Tensor) -> torch.Tensor | str:
        try:
            return decode_jpeg(
                data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True
            )
        except Exception as e:
            return f"{type(e).__name__}: {e}"

    if not encoded:
        return []
    try:
        return list(
            decode_jpeg(
                list(encoded), mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True
            )
        )
    except Exception:
        return [one(d) for d in encoded]


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


def decode_file(index: int, path: str, on_device: bool) -> Decoded:
    """Decode one file with PIL, or (``on_device``, a JPEG torchvision takes) only read its
    bytes for :func:`decode_on_device`; a failure is returned as the item's error."""
    try:
        if on_device and _device_decodable(path):
            return Decoded(index, None, encoded=read_encoded(path))
        return Decoded(index, pil_to_tensor(load_rgb(path)))
    except Exception as e:
        return Decoded(index, None, f"{type(e).__name__}: {e}")


class _FileDecoder:
    """A map-style dataset whose keys are ``(sample index, path)``: it holds no sample list,
    so workers started once serve every later pass (:class:`DecodeWorkers`)."""

    def __init__(self, on_device: bool) -> None:
        self.on_device = on_device

    def __getitem__(self, key: tuple[int, str]) -> Decoded:
        return decode_file(key[0], key[1], self.on_device)


class _Keys:
    """The sampler of :class:`DecodeWorkers`: the keys of the current pass, read by the
    DataLoader in the main process each time a pass starts."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, str]] = []

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class DecodeWorkers:
    """CPU decode workers that persist across passes (datasets) of one ``precompute``.

    ``batches(keys)`` yields :class:`DecodedBatch` es of ``batch_size`` for the
    ``(sample index, path)`` keys, decoded in ``workers`` processes (0: in this one),
    pinned when ``pin`` (CUDA). Close it (or use it as a context manager) to stop them.
    """

    def __init__(self, workers: int, batch_size: int, pin: bool, decode: str = "pil") -> None:
        import torch

        if decode not in DECODERS:
            raise ValueError(f"decode must be one of {DECODERS}, got {decode!r}")
        self._keys = _Keys()
        self.workers, self.batch_size, self.decode = workers, batch_size, decode
        self._loader = torch.utils.data.DataLoader(
            _FileDecoder(decode == "device"),  # type: ignore[arg-type]
            batch_size=batch_size,
            sampler=self._keys,  # type: ignore[arg-type]
            num_workers=workers,
            collate_fn=collate_decoded,
            pin_memory=pin,
            persistent_workers=workers > 0,
        )

    def batches(self, keys: Sequence[tuple[int, str]]) -> Iterator[DecodedBatch]:
        """Decoded batches of ``keys``, in order."""
        self._keys.keys = list(keys)
        return iter(self._loader)

    def close(self) -> None:
        """Stop the worker processes."""
        it = getattr(self._loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self._loader._iterator = None  # type: ignore[attr-defined]

    def __enter__(self) -> DecodeWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
