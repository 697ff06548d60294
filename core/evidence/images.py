"""Thumbnails with no metadata left in them, and a decompression-bomb guard.

Uploaded photos carry GPS positions and camera serials in EXIF; a thumbnail is shown to reviewers,
so it is rebuilt from pixels alone and saved with no EXIF, ICC profile or comment.
"""
from __future__ import annotations

import io
import struct
import warnings
from typing import BinaryIO

from PIL import Image, ImageOps

from core.platform.errors import ValidationError

# 40 megapixels covers any phone or camera photo; a larger claim is almost surely a bomb.
# Pillow warns above this and refuses above twice this; we refuse at the limit itself.
MAX_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

THUMBNAIL_FORMATS = ["JPEG", "PNG"]
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_NO_LENGTH = {0x01, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8}


def _too_large(width: int, height: int) -> ValidationError:
    return ValidationError(
        "image_too_large",
        f"This image is {width}x{height} pixels, which is too large to process "
        f"(the limit is {MAX_PIXELS // 1_000_000} megapixels).",
    )


def _unreadable() -> ValidationError:
    return ValidationError("image_unreadable", "This image is damaged or not a JPEG or PNG picture.")


def _flatten(im: Image.Image) -> Image.Image:
    """RGB pixels only, in a new image: nothing from the original's info dict comes along."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent areas become white, not the black a plain RGB conversion gives.
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    rgb = im.convert("RGB")
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


def make_thumbnail(src_stream: BinaryIO, max_px: int = 512) -> bytes:
    """A JPEG no larger than max_px on either side, upright, with no metadata segments."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src_stream, formats=THUMBNAIL_FORMATS) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise _too_large(width, height)
                upright = ImageOps.exif_transpose(im)
                upright.thumbnail((max_px, max_px))
                clean = _flatten(upright)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ValidationError(
            "image_too_large", f"This image is too large to process (the limit is "
            f"{MAX_PIXELS // 1_000_000} megapixels).") from exc
    except ValidationError:
        raise
    except Exception as exc:
        # Pillow's decoders raise many types on hostile input (OSError, SyntaxError, struct.error,
        # ValueError...); to the caller they all mean the same thing.
        raise _unreadable() from exc
    out = io.BytesIO()
    # No exif=, icc_profile= or comment=: the fresh image has an empty info dict to inherit from.
    clean.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


def _png_size(head: bytes) -> tuple[int, int] | None:
    # Signature (8), IHDR length (4), b"IHDR" (4), width (4), height (4).
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _jpeg_size(stream: BinaryIO) -> tuple[int, int] | None:
    """Walk marker segments to the first SOFn; only lengths are read, never scan data."""
    stream.seek(2, io.SEEK_CUR)  # past SOI
    for _ in range(1000):  # bounded: a hostile file cannot loop us
        byte = stream.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            return None
        marker = stream.read(1)
        while marker == b"\xff":  # fill bytes
            marker = stream.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _JPEG_NO_LENGTH:
            continue
        if code in (0xD9, 0xDA):  # EOI or start of scan before any frame header
            return None
        raw_len = stream.read(2)
        if len(raw_len) < 2:
            return None
        length = struct.unpack(">H", raw_len)[0]
        if length < 2:
            return None
        if code in _JPEG_SOF:
            body = stream.read(5)
            if len(body) < 5:
                return None
            height, width = struct.unpack(">HH", body[1:5])
            return width, height
        stream.seek(length - 2, io.SEEK_CUR)
    return None


def image_dimensions(stream: BinaryIO) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header, or None; the stream's position is restored."""
    pos = stream.tell()
    try:
        head = stream.read(24)
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png_size(head)
        if head.startswith(b"\xff\xd8"):
            stream.seek(pos)
            return _jpeg_size(stream)
        return None
    finally:
        stream.seek(pos)


def image_dimensions_ok(stream: BinaryIO, limit: int = MAX_PIXELS) -> bool:
    """False for a PNG/JPEG whose header claims more than `limit` pixels, or whose header is
    unreadable (fail closed); True for other formats, which this guard does not judge."""
    pos = stream.tell()
    head = stream.read(8)
    stream.seek(pos)
    if not (head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8")):
        return True
    size = image_dimensions(stream)
    if size is None:
        return False
    width, height = size
    return 0 < width * height <= limit
