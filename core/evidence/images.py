"""Thumbnails with no metadata left in them, and a decompression-bomb guard.

Uploaded photos carry GPS positions and camera serials in EXIF; a thumbnail is shown to reviewers,
so it is rebuilt from pixels alone and saved with no EXIF, ICC profile or comment.
"""
from __future__ import annotations

import io
import struct
import warnings
from typing import BinaryIO

from PIL import Image, ImageChops, ImageMath, ImageOps

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


# Modes with an alpha channel; a colour key (tRNS) in info["transparency"] is handled besides.
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Samples wider than 8 bits: scaled down to 8 bits, never clipped at 255.
_WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})


def _eight_bit(im: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float image as L, scaled (not clipped) to 0..255. 16-bit samples map
    0..65535 -> 0..255; I and F are read by their range: I within 0..255 as is, within 0..65535 as
    16-bit; F within 0..1 as a fraction; anything else stretched from its minimum to its maximum."""
    if im.mode.startswith("I;16"):
        im = im.convert("I")
        scale, offset = 1 / 257, 0.0
    else:
        low, high = im.getextrema()
        if im.mode == "F" and 0 <= low and high <= 1:
            scale, offset = 255.0, 0.0
        elif im.mode == "I" and 0 <= low and high <= 255:
            scale, offset = 1.0, 0.0
        elif 0 <= low and high <= 65535:
            scale, offset = 1 / 257, 0.0
        else:
            scale = 255 / (high - low) if high > low else 0.0
            offset = -low * scale
    return im.point(lambda v: v * scale + offset).convert("L")


def _key_mask(im: Image.Image, key: int) -> Image.Image:
    """L mask of a wide grey image's colour key (PNG tRNS on 16-bit grey): 0 where transparent."""
    wide = im.convert("I") if im.mode != "I" else im
    opaque = ImageMath.lambda_eval(lambda a: a["notequal"](a["im"], key), im=wide)
    return opaque.point(lambda v: v * 255).convert("L")


def display_rgb(im: Image.Image) -> Image.Image:
    """Any mode Pillow opens -> a new RGB image that looks like the original on a white page.

    1, L, P, RGB, YCbCr: converted. Alpha (RGBA, LA, PA) and colour keys (P, L or RGB with tRNS):
    transparent areas become white, never the black a plain conversion gives. CMYK: Pillow decodes
    every CMYK JPEG with Adobe's inverted convention; one without an Adobe marker stores plain
    values, so it is inverted back. I;16 and the other 16/32-bit and float modes: scaled to 8 bits
    (_eight_bit). Nothing from the original's info dict (EXIF, ICC, comments) comes along.
    Raises ValueError for a mode Pillow cannot convert to RGB (LAB, HSV)."""
    key = im.info.get("transparency")
    alpha = None
    if im.mode == "CMYK" and "adobe" not in im.info:
        im = ImageChops.invert(im)
    if im.mode in _WIDE_MODES:
        if isinstance(key, int) and im.mode != "F":
            alpha = _key_mask(im, key)
        im = _eight_bit(im)
    elif im.mode in _ALPHA_MODES or key is not None:
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")  # applies a P, L or RGB colour key as alpha
        im, alpha = rgba, rgba.getchannel("A")
    if alpha is not None:
        out = Image.new("RGB", im.size, (255, 255, 255))
        out.paste(im.convert("RGB") if im.mode != "RGBA" else im, mask=alpha)
        return out
    rgb = im.convert("RGB")
    rgb.info = {}
    return rgb


def _resize_first(im: Image.Image) -> bool:
    """True when shrinking before display_rgb gives the same picture for less memory: plain
    colour modes with no colour key (resizing would blend the key colour into its neighbours,
    and P or 1 would be resized by nearest neighbour)."""
    return im.mode in ("RGB", "L", "CMYK", "YCbCr") and "transparency" not in im.info


def make_thumbnail(src_stream: BinaryIO, max_px: int = 512) -> bytes:
    """A JPEG no larger than max_px on either side, upright, with no metadata segments, that looks
    like the original (display_rgb; the first frame of an animation). Raises ValidationError
    image_too_large (over MAX_PIXELS) or image_unreadable (damaged, cut off, or a mode that cannot
    be shown)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src_stream, formats=THUMBNAIL_FORMATS) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise _too_large(width, height)
                if im.format == "JPEG":
                    im.draft(None, (max_px, max_px))  # decode at a reduced scale: less memory and time
                # In place: a copy of a 40-megapixel image is 160 MB the work horse need not hold.
                im.load()
                ImageOps.exif_transpose(im, in_place=True)
                upright = im
                if _resize_first(upright):
                    upright.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
                    clean = display_rgb(upright)
                else:
                    clean = display_rgb(upright)
                    clean.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
                # A fresh image from pixels alone: nothing of the original's info can follow.
                clean = Image.frombytes("RGB", clean.size, clean.tobytes())
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
