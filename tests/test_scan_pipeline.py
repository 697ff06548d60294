"""The scan pipeline through a real clamd and a real (forking, burst) RQ worker."""
from __future__ import annotations

import io
import time

import pytest
from sqlalchemy import text

from core.platform.db import db
from core.platform.models import AuditEvent, EvidenceFile, Submission
from core.evidence.scan_pipeline import scan_file, sweep_pending
from tests.evidence_support import CLEAN_PDF, CSV, png, run_worker, setup_people, sign_in, stored_keys, submit

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNATURE = "Eicar-Test-Signature.UNOFFICIAL"


@pytest.fixture
def clamd_app(make_app, clamd_server):
    clamd_server.start()  # heals a server an earlier test left stopped
    yield make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.url, CLAMD_TIMEOUT_SECONDS=10)
    clamd_server.start()


def file_row(app, file_id: int) -> EvidenceFile:
    with app.app_context():
        row = db.session.get(EvidenceFile, file_id)
        db.session.expunge(row)
        return row


def submission_row(app, submission_id: int) -> Submission:
    with app.app_context():
        row = db.session.get(Submission, submission_id)
        db.session.expunge(row)
        return row


def test_infected_file_is_deleted_at_once_and_rejects_the_submission(clamd_app):
    people = setup_people(clamd_app)
    sid, (clean_id, infected_id) = submit(clamd_app, people["owner"], [("notes.pdf", CLEAN_PDF), ("eicar.csv", EICAR)])
    infected_key = file_row(clamd_app, infected_id).storage_key
    assert infected_key in stored_keys(clamd_app)
    run_worker(clamd_app)

    infected = file_row(clamd_app, infected_id)
    assert (infected.scan_state, infected.scan_signature) == ("infected", SIGNATURE)
    assert infected_key not in stored_keys(clamd_app)
    assert stored_keys(clamd_app) == [file_row(clamd_app, clean_id).storage_key]
    assert file_row(clamd_app, clean_id).scan_state == "clean"
    submission = submission_row(clamd_app, sid)
    assert submission.status == "rejected"
    assert submission.reason == f"File eicar.csv contains malware ({SIGNATURE})."
    with clamd_app.app_context():
        event = db.session.query(AuditEvent).filter_by(action="file.infected").one()
        assert event.subject_id == str(infected_id) and event.details["signature"] == SIGNATURE

    client = clamd_app.test_client()
    sign_in(client, "reviewer")
    response = client.get(f"/api/files/{infected_id}")
    assert response.status_code == 410 and response.json["code"] == "file_infected"


def test_an_infected_object_that_survived_its_delete_is_removed_by_a_retry_or_the_sweeper(clamd_app):
    """The verdict is committed before the object is deleted; if that delete fails, the job fails
    and RQ runs it again, and the run finds the row infected and deletes what is left. If every
    retry failed too, the sweeper queues it once more."""
    people = setup_people(clamd_app)
    sid, (infected_id,) = submit(clamd_app, people["owner"], [("eicar.csv", EICAR)])
    run_worker(clamd_app)
    row = file_row(clamd_app, infected_id)
    assert row.scan_state == "infected" and stored_keys(clamd_app) == []
    storage = clamd_app.extensions["points"].storage
    storage.put(row.storage_key, io.BytesIO(EICAR), len(EICAR), "text/csv")  # as if the delete had failed
    with clamd_app.app_context():
        assert scan_file(infected_id) is None  # RQ's retry of the same job
    assert stored_keys(clamd_app) == []
    storage.put(row.storage_key, io.BytesIO(EICAR), len(EICAR), "text/csv")  # and every retry failed
    with clamd_app.app_context():
        db.session.execute(text("UPDATE evidence_files SET scanned_at = now() - interval '3 hours'"))  # chain over
        db.session.commit()
        assert sweep_pending()["enqueued"] == 1
    run_worker(clamd_app)
    assert stored_keys(clamd_app) == []
    assert file_row(clamd_app, infected_id).scan_state == "infected" and submission_row(clamd_app, sid).status == "rejected"


def test_clean_files_move_the_submission_to_review_and_images_get_thumbnails(clamd_app):
    people = setup_people(clamd_app)
    sid, (pdf_id, png_id) = submit(clamd_app, people["owner"], [("a.pdf", CLEAN_PDF), ("b.png", png())])
    run_worker(clamd_app)
    assert submission_row(clamd_app, sid).status == "in_review"
    assert file_row(clamd_app, pdf_id).scan_state == "clean" and file_row(clamd_app, pdf_id).thumbnail_key is None
    assert file_row(clamd_app, png_id).thumbnail_key.startswith(f"thumbnails/{people['owner']}/EXPLORE/")
    with clamd_app.app_context():  # idempotent: a second run of the job changes nothing
        assert scan_file(pdf_id) is None
        assert file_row(clamd_app, pdf_id).scan_attempts == 1


def test_clamd_down_keeps_the_file_pending_then_the_retry_makes_it_clean(clamd_app, clamd_server):
    people = setup_people(clamd_app)
    sid, [file_id] = submit(clamd_app, people["owner"], [("a.pdf", CLEAN_PDF)])
    client = clamd_app.test_client()
    sign_in(client, "owner")

    clamd_server.stop()
    try:
        run_worker(clamd_app, with_scheduler=True)
        row = file_row(clamd_app, file_id)
        assert (row.scan_state, row.scan_attempts) == ("pending", 1)
        response = client.get(f"/api/files/{file_id}")
        assert response.status_code == 409 and response.json["code"] == "file_not_ready"
        assert client.get(f"/api/files/{file_id}/signed-url").status_code == 409
    finally:
        clamd_server.start()

    # Nobody acts: RQ's scheduler re-enqueues the retry when its 5 s back-off comes due.
    deadline = time.monotonic() + 60
    while file_row(clamd_app, file_id).scan_state == "pending" and time.monotonic() < deadline:
        time.sleep(1)
        run_worker(clamd_app, with_scheduler=True)
    row = file_row(clamd_app, file_id)
    assert (row.scan_state, row.scan_attempts) == ("clean", 2)
    assert submission_row(clamd_app, sid).status == "in_review"
    with client.get(f"/api/files/{file_id}") as response:
        assert response.status_code == 200


def test_the_sweeper_recovers_a_scan_job_redis_lost(make_app, clamd_server):
    clamd_server.start()
    app = make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.url, SCAN_SWEEP_MINUTES=1)
    people = setup_people(app)
    sid, [file_id] = submit(app, people["owner"], [("a.csv", CSV)])
    svc = app.extensions["points"]
    svc.queues["scans"].empty()  # the job is lost
    with app.app_context():
        db.session.execute(text("UPDATE evidence_files SET created_at = now() - interval '5 minutes'"))
        db.session.commit()
        assert sweep_pending()["enqueued"] == 1
        assert sweep_pending() == {"enqueued": 0, "skipped": 1, "advanced": 0}  # no pile-up
        # Three windows later that sweep's job (or its retry chain) is still alive: no second chain.
        assert sweep_pending(now=time.time() + 180) == {"enqueued": 0, "skipped": 1, "advanced": 0}
    assert svc.queues["scans"].count == 1
    svc.queues["scans"].empty()
    # The periodic entry (jobs/schedule.py) as the scheduler enqueues it.
    svc.queues.enqueue("scans", "jobs.scans.sweep_pending")
    run_worker(app)
    assert file_row(app, file_id).scan_state == "clean"
    assert submission_row(app, sid).status == "in_review"


def test_scanning_off_marks_files_unscanned_never_clean(make_app):
    app = make_app(AV_SCAN_ENABLED="false")
    people = setup_people(app)
    sid, [file_id] = submit(app, people["owner"], [("a.pdf", CLEAN_PDF)])
    run_worker(app)
    assert file_row(app, file_id).scan_state == "unscanned"
    assert submission_row(app, sid).status == "in_review"
    client = app.test_client()
    sign_in(client, "reviewer")
    with client.get(f"/api/files/{file_id}") as response:
        assert response.status_code == 200 and response.data == CLEAN_PDF

    # Scanning switched back on: an unscanned file is no longer served.
    app_on = make_app(AV_SCAN_ENABLED="true", LOCAL_STORAGE_ROOT=app.extensions["points"].storage.root)
    client_on = app_on.test_client()
    sign_in(client_on, "reviewer")
    response = client_on.get(f"/api/files/{file_id}")
    assert response.status_code == 409 and response.json["code"] == "file_not_scanned"


def test_a_file_whose_object_vanished_is_marked_deleted_and_its_siblings_move_on(clamd_app):
    people = setup_people(clamd_app)
    sid, (gone_id, kept_id) = submit(clamd_app, people["owner"], [("gone.csv", CSV), ("notes.pdf", CLEAN_PDF)])
    clamd_app.extensions["points"].storage.delete(file_row(clamd_app, gone_id).storage_key)
    run_worker(clamd_app)
    gone = file_row(clamd_app, gone_id)
    assert gone.deleted_at is not None and gone.scan_state == "pending"  # never marked clean
    assert file_row(clamd_app, kept_id).scan_state == "clean"
    assert submission_row(clamd_app, sid).status == "in_review"  # judged on the file that is left
    with clamd_app.app_context():
        assert db.session.query(AuditEvent).filter_by(action="file.object_missing", subject_id=str(gone_id)).count() == 1


def test_the_sweeper_moves_on_a_submission_left_scanning_with_every_file_done(clamd_app):
    people = setup_people(clamd_app)
    sid, [file_id] = submit(clamd_app, people["owner"], [("a.csv", CSV)])
    run_worker(clamd_app)
    with clamd_app.app_context():  # as if the job had crashed between its two commits
        db.session.execute(text("UPDATE submissions SET status = 'scanning', created_at = now() - interval '1 hour'"))
        db.session.commit()
        assert sweep_pending(older_than_minutes=10)["advanced"] == 1
        assert sweep_pending(older_than_minutes=10)["advanced"] == 0
    assert submission_row(clamd_app, sid).status == "in_review" and file_row(clamd_app, file_id).scan_state == "clean"


def test_a_submission_whose_only_file_vanished_asks_for_it_again(clamd_app):
    people = setup_people(clamd_app)
    sid, [gone_id] = submit(clamd_app, people["owner"], [("gone.csv", CSV)])
    clamd_app.extensions["points"].storage.delete(file_row(clamd_app, gone_id).storage_key)
    run_worker(clamd_app)
    submission = submission_row(clamd_app, sid)
    assert submission.status == "changes_requested"  # the uploader can resubmit; nothing waits for ever
    assert submission.reason == "We could not keep any of the files of this submission. Please upload them again."
    client = clamd_app.test_client()
    sign_in(client, "owner")
    assert "Please upload them again." in client.get(f"/submissions/{sid}").get_data(as_text=True)
