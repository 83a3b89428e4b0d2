"""Uploaded bytes are decoded safely, in memory, to RGB; bad input gets one-line errors."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from beyond_inet.uploads import Limits, UploadError, decode_upload, limits_from_env


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims ``w`` x ``h`` RGB pixels with almost no data (a bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _one_line_error(data: bytes, limits: Limits | None = None) -> str:
    with pytest.raises(UploadError) as info:
        decode_upload(data, "pic.bin", limits)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("pic.bin: ")
    return msg


RGB = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "fmt, shown",
    [("JPEG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WebP"), ("BMP", "BMP"), ("TIFF", "TIFF")],
)
def test_each_supported_format_decodes(fmt: str, shown: str) -> None:
    out = decode_upload(_encode(RGB, fmt), "x")
    assert out.format == shown and out.image.mode == "RGB" and out.image.size == (60, 40)
    if fmt in ("PNG", "BMP", "TIFF"):  # lossless
        assert np.array_equal(np.asarray(out.image), np.asarray(RGB))


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode_upload(_encode(RGB, "JPEG", exif=exif), "x")
    assert out.size == (60, 40) and out.image.size == (40, 60)


def test_mode_conversions() -> None:
    gray = decode_upload(_encode(Image.new("L", (4, 4), 77), "PNG")).image
    assert gray.mode == "RGB" and gray.getpixel((0, 0)) == (77, 77, 77)
    cmyk = decode_upload(
        _encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=100)
    ).image
    assert cmyk.getpixel((4, 4)) == pytest.approx((255, 0, 0), abs=3)
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert decode_upload(_encode(pal, "PNG")).image.getpixel((0, 0)) == (10, 200, 30)
    clear = decode_upload(_encode(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG")).image
    assert clear.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    deep = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert decode_upload(_encode(deep, "PNG")).image.getpixel((0, 0)) == (255, 255, 255)
    half = Image.fromarray(np.full((4, 4), 32896, np.uint16))  # 32896 / 65535 * 255 = 128
    assert decode_upload(_encode(half, "PNG")).image.getpixel((0, 0)) == (128, 128, 128)


def test_empty_not_image_unsupported_corrupt() -> None:
    assert "empty" in _one_line_error(b"")
    assert "not a supported image" in _one_line_error(b"hello, I am a text file\n" * 10)
    gif = _encode(Image.new("RGB", (4, 4)), "GIF")
    assert "not a supported image (JPEG, PNG, WebP, BMP, TIFF)" in _one_line_error(gif)
    jpeg = _encode(RGB.resize((200, 200)), "JPEG")
    assert "corrupt or truncated" in _one_line_error(jpeg[: len(jpeg) // 3])


def test_size_limit() -> None:
    data = _encode(RGB, "PNG")
    msg = _one_line_error(data, Limits(max_bytes=len(data) - 1))
    assert "the limit is" in msg
    assert decode_upload(data, "x", Limits(max_bytes=len(data))).size == (60, 40)


def test_pixel_limit_checked_before_decoding() -> None:
    # Header-only PNGs: decoding them would need gigabytes; they are refused from the header.
    msg = _one_line_error(_png_header_only(8000, 8000))  # 64 MP > default 50 MP
    assert "8000 x 8000" in msg and "decompression bomb" in msg
    assert "decompression bomb" in _one_line_error(_png_header_only(100_000, 100_000))
    assert "decompression bomb" in _one_line_error(_encode(RGB, "PNG"), Limits(max_pixels=2399))
    assert decode_upload(_encode(RGB, "PNG"), "x", Limits(max_pixels=2400)).size == (60, 40)


def test_limits_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEYOND_INET_MAX_UPLOAD_MB", "0.5")
    monkeypatch.setenv("BEYOND_INET_MAX_PIXELS", "1000")
    assert limits_from_env() == Limits(max_bytes=524288, max_pixels=1000)
    monkeypatch.setenv("BEYOND_INET_MAX_PIXELS", "lots")
    with pytest.raises(UploadError, match="BEYOND_INET_MAX_PIXELS"):
        limits_from_env()
    monkeypatch.delenv("BEYOND_INET_MAX_PIXELS")
    monkeypatch.delenv("BEYOND_INET_MAX_UPLOAD_MB")
    assert limits_from_env() == Limits()
