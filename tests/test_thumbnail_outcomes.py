"""A thumbnail's outcome is final and stored, through the real worker and the real API: made, or
failed with its reason, never "not ready" for ever. The two field reports: a JPEG cut off
half-way, and an RGB PNG whose tRNS chunk makes black transparent."""
from __future__ import annotations

import html as html_lib
import io

from PIL import Image

from core.platform.db import db
from core.platform.models import AuditEvent, EvidenceFile
from core.evidence.thumbnails import make_file_thumbnail
from tests.evidence_support import run_worker, setup_people, sign_in, stored_keys, submit


def _row(app, file_id: int) -> EvidenceFile:
    with app.app_context():
        row = db.session.get(EvidenceFile, file_id)
        db.session.expunge(row)
        return row


def cut_off_jpeg() -> bytes:
    im = Image.effect_noise((800, 600), 60).convert("RGB")  # noise: the scan data is most of the file
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    data = out.getvalue()
    return data[: len(data) // 2]


def test_a_cut_off_jpeg_gets_a_final_answer_and_stays_downloadable(app):
    people = setup_people(app)
    sid, [file_id] = submit(app, people["owner"], [("scan.jpg", cut_off_jpeg())])
    run_worker(app)

    row = _row(app, file_id)
    assert row.scan_state == "clean"
    assert (row.thumbnail_state, row.thumbnail_error, row.thumbnail_key) == ("failed", "the image is damaged", None)
    assert stored_keys(app) == [row.storage_key]  # no thumbnail object half-written
    with app.app_context():
        assert db.session.query(AuditEvent).filter_by(action="file.thumbnail_failed").count() == 1
        assert make_file_thumbnail(file_id) is None  # a retry is a no-op: the outcome is final
        assert db.session.query(AuditEvent).filter_by(action="file.thumbnail_failed").count() == 1

    reviewer = app.test_client()
    sign_in(reviewer, "reviewer")
    answer = reviewer.get(f"/api/files/{file_id}/thumbnail")
    assert answer.status_code == 422 and answer.json["code"] == "thumbnail_failed"
    assert answer.json["message"].startswith("No preview: the image is damaged.")
    assert reviewer.get(f"/api/files/{file_id}").status_code == 200  # the original stays downloadable

    page = html_lib.unescape(reviewer.get(f"/review/{sid}").get_data(as_text=True))
    assert "no preview: the image is damaged" in page and f'data-testid="download-{file_id}"' in page
    owner = app.test_client()
    sign_in(owner, "owner")
    assert "no preview: the image is damaged" in owner.get(f"/submissions/{sid}").get_data(as_text=True)


def test_an_rgb_png_with_a_trns_colour_key_shows_white_where_it_is_transparent(app):
    people = setup_people(app)
    im = Image.new("RGB", (200, 100), (0, 0, 0))  # left half black, keyed transparent
    im.paste((20, 90, 200), (100, 0, 200, 100))
    out = io.BytesIO()
    im.save(out, "PNG", transparency=(0, 0, 0))
    sid, [file_id] = submit(app, people["owner"], [("chart.png", out.getvalue())])
    run_worker(app)
    assert _row(app, file_id).thumbnail_state == "made"

    reviewer = app.test_client()
    sign_in(reviewer, "reviewer")
    answer = reviewer.get(f"/api/files/{file_id}/thumbnail")
    assert answer.status_code == 200 and answer.mimetype == "image/jpeg"
    with Image.open(io.BytesIO(answer.data)) as thumb:
        rgb = thumb.convert("RGB")
        left, right = rgb.getpixel((50, 50)), rgb.getpixel((150, 50))
    assert min(left) >= 245, f"transparent area is {left}, not white"
    assert all(abs(a - b) <= 12 for a, b in zip(right, (20, 90, 200)))


def test_a_lost_thumbnail_job_is_queued_again_and_a_failing_one_ends_with_a_final_answer(app):
    """Redis lost the job (or its work horse died): the sweep gives the image its outcome."""
    from datetime import timedelta

    from core.evidence.thumbnails import sweep_missing
    from tests.evidence_support import png

    people = setup_people(app)
    _, [file_id] = submit(app, people["owner"], [("photo.png", png())])
    run_worker(app)
    storage = app.extensions["points"].storage
    with app.app_context():
        row = db.session.get(EvidenceFile, file_id)
        storage.delete(row.thumbnail_key)
        row.thumbnail_key = row.thumbnail_state = None  # as if the job had never run
        row.scanned_at = row.scanned_at - timedelta(hours=1)
        db.session.commit()
        app.extensions["points"].redis.delete(f"rq:job:thumbnail-{file_id}")  # and Redis forgot it
        assert sweep_missing()["enqueued"] == 1
        assert sweep_missing()["skipped"] == 1  # queued: not a second time
    run_worker(app)
    assert _row(app, file_id).thumbnail_state == "made"

    # Now a job that fails every time: the original object is gone from the store, so each run
    # raises. After the job and one retry failed, the outcome is recorded as final.
    with app.app_context():
        row = db.session.get(EvidenceFile, file_id)
        storage.delete(row.thumbnail_key)
        row.thumbnail_key = row.thumbnail_state = None
        db.session.commit()
        storage.delete(row.storage_key)
        redis = app.extensions["points"].redis
        redis.delete(f"rq:job:thumbnail-{file_id}")
        assert sweep_missing()["enqueued"] == 1
    run_worker(app)
    with app.app_context():
        assert sweep_missing()["retried"] == 1
    run_worker(app)
    with app.app_context():
        assert sweep_missing()["failed"] == 1
        assert sweep_missing() == {"enqueued": 0, "retried": 0, "failed": 0, "skipped": 0}
    row = _row(app, file_id)
    assert (row.thumbnail_state, row.thumbnail_error) == ("failed", "the preview could not be made")
