"""Thumbnails: made from the stored original by the real worker, with no EXIF left, and the
original untouched."""
from __future__ import annotations

import hashlib
import io

from PIL import Image

from core.platform.db import db
from core.platform.models import EvidenceFile
from core.evidence.thumbnails import make_file_thumbnail
from tests.evidence_support import CLEAN_PDF, run_worker, setup_people, sign_in, submit

GPS_IFD = 0x8825


def camera_jpeg() -> bytes:
    """A 2000x1500 photo with camera make/model/serial and a GPS position in EXIF."""
    im = Image.new("RGB", (2000, 1500), (30, 120, 200))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"          # Make
    exif[0x0110] = "Model X-123"        # Model
    exif[0xA431] = "SERIAL-998877"      # BodySerialNumber
    exif[0x0112] = 6                    # Orientation: rotate 90 on display
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (38.0, 42.0, 51.0), 3: "W", 4: (9.0, 8.0, 22.0)})
    out = io.BytesIO()
    im.save(out, "JPEG", exif=exif.tobytes(), comment=b"shot at home")
    return out.getvalue()


def jpeg_segments(data: bytes) -> list[int]:
    """Marker codes before the scan data (APPn, COM, DQT...)."""
    assert data[:2] == b"\xff\xd8"
    pos, markers = 2, []
    while pos < len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        pos += 2 + length
    return markers


def test_thumbnail_has_no_exif_and_the_original_is_unchanged(app):
    people = setup_people(app)
    original = camera_jpeg()
    assert b"SecretCam" in original and b"Exif" in original
    _, [file_id] = submit(app, people["owner"], [("holiday.jpg", original)])
    run_worker(app)

    storage = app.extensions["points"].storage
    with app.app_context():
        row = db.session.get(EvidenceFile, file_id)
        assert row.scan_state == "clean"
        assert row.thumbnail_key == f"thumbnails/{people['owner']}/EXPLORE/{row.uuid}.jpg"
        thumb = b"".join(storage.iter_chunks(row.thumbnail_key))
        stored_original = b"".join(storage.iter_chunks(row.storage_key))
        sha = row.sha256
    assert hashlib.sha256(stored_original).hexdigest() == sha == hashlib.sha256(original).hexdigest()

    markers = jpeg_segments(thumb)
    assert 0xE1 not in markers, "no APP1 (Exif/XMP) segment"
    assert 0xFE not in markers, "no comment segment"
    for secret in (b"Exif", b"SecretCam", b"SERIAL-998877", b"shot at home"):
        assert secret not in thumb
    with Image.open(io.BytesIO(thumb)) as im:
        assert im.format == "JPEG" and max(im.size) <= 512
        assert im.size == (384, 512), "rotated upright by the Orientation tag, then shrunk"
        assert not im.getexif()

    # The thumbnail route serves exactly these bytes, inline, to the uploader.
    client = app.test_client()
    sign_in(client, "owner")
    response = client.get(f"/api/files/{file_id}/thumbnail")
    assert response.status_code == 200 and response.data == thumb
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "private, no-store"


def test_thumbnail_job_is_idempotent_and_skips_non_images(app):
    people = setup_people(app)
    _, [pdf_id, png_id] = submit(app, people["owner"], [("a.pdf", CLEAN_PDF), ("b.png", camera_png())])
    run_worker(app)
    with app.app_context():
        key = db.session.get(EvidenceFile, png_id).thumbnail_key
        assert key
        assert make_file_thumbnail(png_id) is None  # already done: nothing rewritten
        assert make_file_thumbnail(pdf_id) is None
        assert db.session.get(EvidenceFile, pdf_id).thumbnail_key is None
    client = app.test_client()
    sign_in(client, "owner")
    response = client.get(f"/api/files/{pdf_id}/thumbnail")
    assert response.status_code == 404 and response.json["code"] == "thumbnail_not_found"


def camera_png() -> bytes:
    im = Image.new("RGBA", (800, 600), (10, 200, 10, 128))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()
