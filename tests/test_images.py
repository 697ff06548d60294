"""Thumbnails: upright, small, and with no metadata left; bombs and corrupt files refused."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import ExifTags, Image

from core.platform.errors import ValidationError
from core.evidence.images import MAX_PIXELS, image_dimensions, image_dimensions_ok, make_thumbnail

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def exif_jpeg(size: tuple[int, int] = (1200, 600), orientation: int = 6) -> bytes:
    """A camera-like JPEG: Make/Model, a GPS position, an orientation, a comment and an ICC blob."""
    im = Image.new("RGB", size, (255, 0, 0))
    # Left third green, so a rotation is visible in the pixels, not only in the size.
    im.paste((0, 255, 0), (0, 0, size[0] // 3, size[1]))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "CameraMaker"
    exif[ExifTags.Base.Model] = "SecretModel X"
    exif[ExifTags.Base.BodySerialNumber] = "SN123456789"
    exif[ORIENTATION] = orientation
    gps = exif.get_ifd(GPS_IFD)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (51.0, 30.0, 12.5)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (0.0, 7.0, 39.9)
    out = io.BytesIO()
    im.save(out, "JPEG", exif=exif.tobytes(), comment=b"shot at home", icc_profile=b"FAKEICCPROFILE" * 4)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A complete, valid PNG of `width` x `height` black greyscale pixels, small on disk.

    Compressing 900 MB of zeros takes seconds, so one row is compressed and, after a full flush
    (which resets the compressor's history), its output repeated; the stream ends with an empty
    final block and the Adler-32 of n zero bytes, which is (n mod 65521) << 16 | 1.
    """
    row = b"\0" * (width + 1)  # filter byte + one byte per pixel
    compressor = zlib.compressobj(9)
    first = compressor.compress(row) + compressor.flush(zlib.Z_FULL_FLUSH)  # with the zlib header
    unit = compressor.compress(row) + compressor.flush(zlib.Z_FULL_FLUSH)
    total = height * len(row)
    idat = first + unit * (height - 1) + b"\x03\x00" + struct.pack(">I", ((total % 65521) << 16) | 1)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_header_claiming(width: int, height: int) -> bytes:
    """SOI, APP0, then a baseline SOF0 claiming the size; no pixel data follows."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\0\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof0


def test_thumbnail_has_no_exif_gps_comment_or_icc() -> None:
    data = exif_jpeg()
    assert b"Exif" in data and b"\xff\xe1" in data and b"SecretModel" in data  # what must not survive
    with Image.open(io.BytesIO(data)) as im:
        assert im.getexif().get_ifd(GPS_IFD)
    thumb = make_thumbnail(io.BytesIO(data))
    assert thumb.startswith(b"\xff\xd8")
    assert b"Exif" not in thumb
    assert b"\xff\xe1" not in thumb  # no APP1 segment at all
    assert b"\xff\xe2" not in thumb  # no APP2 (ICC)
    assert b"\xff\xfe" not in thumb  # no COM
    for secret in (b"CameraMaker", b"SecretModel", b"SN123456789", b"shot at home", b"FAKEICC"):
        assert secret not in thumb
    with Image.open(io.BytesIO(thumb)) as im:
        assert im.format == "JPEG"
        assert not im.getexif()
        assert "icc_profile" not in im.info and "comment" not in im.info


def test_thumbnail_applies_orientation_and_fits_512() -> None:
    # 1200x600 landscape with orientation 6 (rotate 90 clockwise to view) is a portrait photo.
    thumb = make_thumbnail(io.BytesIO(exif_jpeg((1200, 600), orientation=6)))
    with Image.open(io.BytesIO(thumb)) as im:
        assert max(im.size) <= 512
        assert im.size == (256, 512)
        # The green left third ends up on top after a clockwise quarter turn.
        r, g, b = im.convert("RGB").getpixel((128, 20))
        assert g > 200 and r < 60
        r, g, b = im.convert("RGB").getpixel((128, 500))
        assert r > 200 and g < 60


def test_thumbnail_of_png_with_alpha_is_a_jpeg_on_white() -> None:
    src = io.BytesIO()
    Image.new("RGBA", (800, 800), (0, 0, 0, 0)).save(src, "PNG")
    thumb = make_thumbnail(io.BytesIO(src.getvalue()), max_px=100)
    with Image.open(io.BytesIO(thumb)) as im:
        assert im.format == "JPEG" and im.size == (100, 100)
        assert im.getpixel((50, 50)) == (255, 255, 255)


def test_small_image_is_not_enlarged() -> None:
    src = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(src, "PNG")
    with Image.open(io.BytesIO(make_thumbnail(io.BytesIO(src.getvalue())))) as im:
        assert im.size == (40, 30)


def test_png_bomb_is_refused_without_decoding() -> None:
    # The same kind of file at a modest size is a real PNG that thumbnails fine: the refusal
    # below is about its size, not a broken file.
    with Image.open(io.BytesIO(make_thumbnail(io.BytesIO(png_bomb(300, 200))))) as small:
        assert small.size == (300, 200) and small.convert("L").getextrema() == (0, 0)
    bomb = png_bomb()
    assert len(bomb) < 2_000_000  # 900 megapixels in a small file: the point of a bomb
    assert image_dimensions(io.BytesIO(bomb)) == (30000, 30000)
    assert image_dimensions_ok(io.BytesIO(bomb)) is False
    with pytest.raises(ValidationError) as info:
        make_thumbnail(io.BytesIO(bomb))
    assert info.value.code == "image_too_large"


def test_image_between_limit_and_pillows_hard_limit_is_refused() -> None:
    # 7000x7000 = 49 MP: above our 40 MP, below Pillow's own 2x error threshold (a warning only).
    bomb = png_bomb(7000, 7000)
    assert image_dimensions_ok(io.BytesIO(bomb)) is False
    with pytest.raises(ValidationError) as info:
        make_thumbnail(io.BytesIO(bomb))
    assert info.value.code == "image_too_large"


def test_jpeg_header_claiming_huge_size_is_not_ok() -> None:
    assert image_dimensions(io.BytesIO(jpeg_header_claiming(65000, 65000))) == (65000, 65000)
    assert image_dimensions_ok(io.BytesIO(jpeg_header_claiming(65000, 65000))) is False
    assert image_dimensions_ok(io.BytesIO(jpeg_header_claiming(4000, 3000))) is True


def test_dimensions_of_real_images_and_position_restored() -> None:
    stream = io.BytesIO(exif_jpeg((1200, 600)))  # EXIF APP1 sits before the frame header
    assert image_dimensions(stream) == (1200, 600)
    assert stream.tell() == 0
    assert image_dimensions_ok(stream)
    assert image_dimensions_ok(io.BytesIO(png_bomb(100, 50)))
    assert image_dimensions_ok(io.BytesIO(png_bomb(100, 50)), limit=4999) is False


def test_dimensions_ok_fails_closed_on_truncated_headers_and_ignores_other_formats() -> None:
    assert image_dimensions_ok(io.BytesIO(b"\x89PNG\r\n\x1a\n\0\0")) is False
    assert image_dimensions_ok(io.BytesIO(b"\xff\xd8\xff\xe0\0")) is False
    assert image_dimensions_ok(io.BytesIO(b"%PDF-1.4\n")) is True
    assert MAX_PIXELS == 40_000_000


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff\xe0 this is not really a jpeg",
        b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
        b"%PDF-1.4\n%%EOF\n",
        b"",
    ],
)
def test_corrupt_or_foreign_data_is_unreadable(data: bytes) -> None:
    with pytest.raises(ValidationError) as info:
        make_thumbnail(io.BytesIO(data))
    assert info.value.code == "image_unreadable"


def test_truncated_jpeg_is_unreadable() -> None:
    data = exif_jpeg((800, 800))
    with pytest.raises(ValidationError) as info:
        make_thumbnail(io.BytesIO(data[: len(data) // 2]))
    assert info.value.code == "image_unreadable"
