"""Thumbnails look like their originals in every mode Pillow opens: one generated image per mode,
four flat quadrants of known colour, and the thumbnail's pixels checked against what the original
shows on a white page (transparency white, wide samples scaled to 8 bits, not clipped)."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageChops

from core.evidence.images import display_rgb, make_thumbnail

SIZE = 64          # the original: four 32x32 quadrants
THUMB = 32         # thumbnails made at 32 px, so every case is really resized
TOLERANCE = 12     # JPEG at quality 85 on flat areas stays well inside this
WHITE, BLACK, RED, GREEN, BLUE = (255, 255, 255), (0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)
QUADRANTS = [(0, 0), (1, 0), (0, 1), (1, 1)]  # (column, row): top-left, top-right, bottom-left, bottom-right


def quadrants(mode: str, values, **info) -> Image.Image:
    im = Image.new(mode, (SIZE, SIZE))
    half = SIZE // 2
    for (col, row), value in zip(QUADRANTS, values):
        im.paste(value, (col * half, row * half, (col + 1) * half, (row + 1) * half))
    im.info.update(info)
    return im


def saved(im: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def without_adobe_marker(data: bytes) -> bytes:
    start = data.find(b"\xff\xee")
    assert start > 0, "no APP14 (Adobe) segment to remove"
    length = int.from_bytes(data[start + 2:start + 4], "big")
    return data[:start] + data[start + 2 + length:]


def png_rgb16(values) -> bytes:
    """A 48-bit RGB PNG (Pillow cannot write one): quadrants of 16-bit (r, g, b) samples."""
    half = SIZE // 2
    rows = []
    for y in range(SIZE):
        line = bytearray(b"\0")  # filter type 0
        for x in range(SIZE):
            line += struct.pack(">HHH", *values[(y >= half) * 2 + (x >= half)])
        rows.append(bytes(line))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", SIZE, SIZE, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


def palette_image(transparent: bool) -> bytes:
    im = quadrants("P", [0, 1, 2, 3])
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (252 * 3))
    return saved(im, "PNG", **({"transparency": 0} if transparent else {}))


def cmyk_jpeg(adobe: bool) -> bytes:
    # CMYK red, green, blue, white. Adobe's convention stores the samples inverted (Pillow writes
    # it so, with the marker); a file without the marker stores them plainly.
    colours = [(0, 255, 255, 0), (255, 0, 255, 0), (255, 255, 0, 0), (0, 0, 0, 0)]
    im = quadrants("CMYK", colours)
    if adobe:
        return saved(im, "JPEG", quality=95)
    return without_adobe_marker(saved(ImageChops.invert(im), "JPEG", quality=95))


def animated_png() -> bytes:
    first = quadrants("RGB", [RED, GREEN, BLUE, WHITE])
    second = quadrants("RGB", [BLUE, BLUE, BLUE, BLUE])
    return saved(first, "PNG", save_all=True, append_images=[second])


# (case, file bytes, what each quadrant looks like on a white page)
FILES = [
    ("1", lambda: saved(quadrants("1", [0, 1, 1, 0]), "PNG"), [BLACK, WHITE, WHITE, BLACK]),
    ("L", lambda: saved(quadrants("L", [0, 85, 170, 255]), "PNG"), [(0,) * 3, (85,) * 3, (170,) * 3, (255,) * 3]),
    ("L jpeg", lambda: saved(quadrants("L", [0, 85, 170, 255]), "JPEG", quality=95),
     [(0,) * 3, (85,) * 3, (170,) * 3, (255,) * 3]),
    ("L with tRNS", lambda: saved(quadrants("L", [0, 85, 170, 255]), "PNG", transparency=0),
     [WHITE, (85,) * 3, (170,) * 3, (255,) * 3]),
    ("LA", lambda: saved(quadrants("LA", [(0, 0), (0, 255), (128, 255), (0, 128)]), "PNG"),
     [WHITE, BLACK, (128,) * 3, (127,) * 3]),
    ("P", lambda: palette_image(False), [BLACK, RED, GREEN, BLUE]),
    ("P with transparency", lambda: palette_image(True), [WHITE, RED, GREEN, BLUE]),
    ("RGB", lambda: saved(quadrants("RGB", [RED, GREEN, BLUE, BLACK]), "PNG"), [RED, GREEN, BLUE, BLACK]),
    ("RGB with tRNS key", lambda: saved(quadrants("RGB", [BLACK, RED, GREEN, BLUE]), "PNG", transparency=BLACK),
     [WHITE, RED, GREEN, BLUE]),
    ("RGBA", lambda: saved(quadrants("RGBA", [(0, 0, 0, 0), (255, 0, 0, 128), (0, 255, 0, 255), (0, 0, 255, 255)]),
                           "PNG"), [WHITE, (255, 127, 127), GREEN, BLUE]),
    ("RGB jpeg", lambda: saved(quadrants("RGB", [RED, GREEN, BLUE, WHITE]), "JPEG", quality=95),
     [RED, GREEN, BLUE, WHITE]),
    ("CMYK with Adobe marker", lambda: cmyk_jpeg(adobe=True), [RED, GREEN, BLUE, WHITE]),
    ("CMYK without Adobe marker", lambda: cmyk_jpeg(adobe=False), [RED, GREEN, BLUE, WHITE]),
    ("I;16", lambda: saved(quadrants("I;16", [0, 16448, 32896, 65535]), "PNG"),
     [(0,) * 3, (64,) * 3, (128,) * 3, (255,) * 3]),
    ("I;16 with tRNS", lambda: saved(quadrants("I;16", [0, 16448, 32896, 65535]), "PNG", transparency=0),
     [WHITE, (64,) * 3, (128,) * 3, (255,) * 3]),
    ("RGB 16-bit", lambda: png_rgb16([(0xFFFF, 0, 0), (0, 0xFFFF, 0), (0x8080, 0x8080, 0x8080), (0, 0, 0)]),
     [RED, GREEN, (128,) * 3, BLACK]),
    ("multi-frame (first frame)", animated_png, [RED, GREEN, BLUE, WHITE]),
]

# Modes neither accepted format stores: the conversion itself, on the image as Pillow holds it.
IMAGES = [
    ("I (16-bit range)", lambda: quadrants("I", [0, 16448, 32896, 65535]), [(0,) * 3, (64,) * 3, (128,) * 3, (255,) * 3]),
    ("I (8-bit range)", lambda: quadrants("I", [0, 64, 128, 255]), [(0,) * 3, (64,) * 3, (128,) * 3, (255,) * 3]),
    ("I (signed 32-bit)", lambda: quadrants("I", [-100000, -50000, 0, 100000]),
     [(0,) * 3, (64,) * 3, (128,) * 3, (255,) * 3]),
    ("I;16B", lambda: quadrants("I;16", [0, 16448, 32896, 65535]).convert("I").convert("I;16B"),
     [(0,) * 3, (64,) * 3, (128,) * 3, (255,) * 3]),
    ("F (0..1)", lambda: quadrants("F", [0.0, 0.25, 0.5, 1.0]), [(0,) * 3, (64,) * 3, (128,) * 3, (255,) * 3]),
    ("F (any range)", lambda: quadrants("F", [-2.0, -1.0, 0.0, 2.0]), [(0,) * 3, (64,) * 3, (128,) * 3, (255,) * 3]),
    ("PA", lambda: quadrants("RGBA", [(0, 0, 0, 0), RED + (255,), GREEN + (255,), BLUE + (255,)]).convert("PA"),
     [WHITE, RED, GREEN, BLUE]),
    ("YCbCr", lambda: quadrants("RGB", [RED, GREEN, BLUE, WHITE]).convert("YCbCr"), [RED, GREEN, BLUE, WHITE]),
]


def assert_looks_like(im: Image.Image, expected, case: str) -> None:
    assert im.mode == "RGB", case
    width, height = im.size
    for (col, row), want in zip(QUADRANTS, expected):
        x, y = int((col + 0.5) * width / 2), int((row + 0.5) * height / 2)
        got = im.getpixel((x, y))
        assert all(abs(g - w) <= TOLERANCE for g, w in zip(got, want)), \
            f"{case}: quadrant {(col, row)} is {got}, the original shows {want}"


@pytest.mark.parametrize("case, make, expected", FILES, ids=[c for c, _, _ in FILES])
def test_thumbnail_looks_like_the_original(case, make, expected):
    data = make()
    thumb = make_thumbnail(io.BytesIO(data), max_px=THUMB)
    assert b"Exif" not in thumb and b"ICC_PROFILE" not in thumb  # no metadata left
    with Image.open(io.BytesIO(thumb)) as im:
        assert im.format == "JPEG" and max(im.size) == THUMB
        assert_looks_like(im.convert("RGB"), expected, case)


@pytest.mark.parametrize("case, make, expected", IMAGES, ids=[c for c, _, _ in IMAGES])
def test_every_other_mode_converts_faithfully(case, make, expected):
    im = make()
    out = display_rgb(im)
    assert out.info == {}  # nothing of the original's info comes along
    assert_looks_like(out, expected, case)


def test_orientation_is_applied():
    im = Image.new("RGB", (SIZE, SIZE // 2), RED)
    im.paste(BLUE, (SIZE // 2, 0, SIZE, SIZE // 2))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: red on top, blue below
    thumb = make_thumbnail(io.BytesIO(saved(im, "JPEG", quality=95, exif=exif.tobytes())), max_px=THUMB)
    with Image.open(io.BytesIO(thumb)) as shown:
        assert shown.size == (THUMB // 2, THUMB)
        assert_looks_like(shown.convert("RGB"), [RED, RED, BLUE, BLUE], "orientation 6")
