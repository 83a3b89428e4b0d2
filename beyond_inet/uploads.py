"""Safe decoding of uploaded image bytes, entirely in memory.

Checks, in order: a byte-size limit, the format (JPEG, PNG, WebP, BMP, TIFF only), a pixel
limit read from the header *before* any pixel is decoded (decompression bombs), then a full
decode. The image is converted to 8-bit RGB by :func:`beyond_inet.datasets.decode.to_rgb` (EXIF
orientation, grayscale, CMYK, palette, alpha, 16-bit). Every failure is an
:class:`UploadError` with a one-line message. Nothing is written to disk.

Limits default to :data:`MAX_UPLOAD_MB` / :data:`MAX_PIXELS` and can be changed with the
environment variables ``BEYOND_INET_MAX_UPLOAD_MB`` and ``BEYOND_INET_MAX_PIXELS``.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from beyond_inet.datasets.decode import to_rgb

MAX_UPLOAD_MB = 25
MAX_PIXELS = 50_000_000
#: PIL format name -> what the user is told.
FORMATS: dict[str, str] = {
    "JPEG": "JPEG",
    "PNG": "PNG",
    "WEBP": "WebP",
    "BMP": "BMP",
    "TIFF": "TIFF",
}
#: File-name extensions offered in upload dialogs.
EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff")


class UploadError(ValueError):
    """An upload that cannot be used; the message is one line, meant for the user."""


@dataclass(frozen=True)
class Limits:
    """Upload limits: bytes per file and pixels (width x height) per image."""

    max_bytes: int = MAX_UPLOAD_MB * 1024 * 1024
    max_pixels: int = MAX_PIXELS

    @property
    def max_mb(self) -> float:
        """The byte limit in MiB."""
        return self.max_bytes / (1024 * 1024)


def _positive_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UploadError(f"{name}={raw!r} is not a number.") from None
    if value <= 0:
        raise UploadError(f"{name} must be positive, got {raw!r}.")
    return value


def limits_from_env() -> Limits:
    """Limits from ``BEYOND_INET_MAX_UPLOAD_MB`` / ``BEYOND_INET_MAX_PIXELS`` or defaults."""
    mb = _positive_env("BEYOND_INET_MAX_UPLOAD_MB", MAX_UPLOAD_MB)
    px = _positive_env("BEYOND_INET_MAX_PIXELS", MAX_PIXELS)
    return Limits(int(mb * 1024 * 1024), int(px))


@dataclass(frozen=True)
class DecodedUpload:
    """A decoded upload: the 8-bit RGB image plus what the file was."""

    image: Image.Image
    format: str
    mode: str
    size: tuple[int, int]  # (width, height) as stored, before EXIF rotation


def _fmt_mb(n: float) -> str:
    return f"{n:.1f} MB" if n >= 0.1 else f"{n * 1024:.0f} KB"


def decode_upload(data: bytes, name: str = "upload", limits: Limits | None = None) -> DecodedUpload:
    """Decode uploaded ``data`` (named ``name`` in messages) to RGB within ``limits``.

    Raises :class:`UploadError` (one line) for empty, too large, non-image, unsupported,
    too many pixels, or corrupt input.
    """
    limits = limits or Limits()
    if not data:
        raise UploadError(f"{name}: the file is empty.")
    if len(data) > limits.max_bytes:
        raise UploadError(
            f"{name}: the file is {_fmt_mb(len(data) / 2**20)}; the limit is "
            f"{_fmt_mb(limits.max_mb)}."
        )
    allowed = ", ".join(FORMATS.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=list(FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise UploadError(
                f"{name}: the image has too many pixels (over {limits.max_pixels:,}); "
                "refused as a possible decompression bomb."
            ) from None
        except UnidentifiedImageError:
            raise UploadError(f"{name}: not a supported image ({allowed}).") from None
        except Exception as e:  # malformed headers raise all sorts of errors
            raise UploadError(f"{name}: not a readable image ({_one_line(e)}).") from None
        with im:
            w, h = im.size
            if w * h > limits.max_pixels:
                raise UploadError(
                    f"{name}: the image is {w} x {h} = {w * h:,} pixels; the limit is "
                    f"{limits.max_pixels:,} (refused as a possible decompression bomb)."
                )
            if w == 0 or h == 0:
                raise UploadError(f"{name}: the image has no pixels.")
            fmt, mode = str(im.format), im.mode
            try:
                im.load()
                rgb = to_rgb(im)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise UploadError(
                    f"{name}: the image has too many pixels; refused as a possible "
                    "decompression bomb."
                ) from None
            except Exception as e:
                raise UploadError(
                    f"{name}: the {FORMATS.get(fmt, fmt)} file is corrupt or truncated "
                    f"({_one_line(e)})."
                ) from None
    return DecodedUpload(rgb, FORMATS.get(fmt, fmt), mode, (w, h))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."
