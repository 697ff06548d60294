"""Small uploads scanned in the upload request (core/evidence/inline_scan.py), against a real
clamd: clean before the POST returns, infected handled as the queued path does, and any file the
request cannot conclude left pending with its usual job queued."""
from __future__ import annotations

import pytest

from core.platform.db import db
from core.platform.models import AuditEvent, EvidenceFile, Submission
from tests.evidence_support import CSV, EICAR_BYTES, post_upload, setup_people, sign_in, stored_keys, submit
from tests.services.ports import free_port

KIB = 1024


@pytest.fixture
def inline_app(make_app, clamd_server):
    clamd_server.start()  # heals a server an earlier test left stopped
    return make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.url, CLAMD_TIMEOUT_SECONDS=10, INLINE_SCAN_MAX_MB=1)


def scans_queued(app) -> list[str]:
    return app.extensions["points"].queues["scans"].job_ids


def media_queued(app) -> list[str]:
    return app.extensions["points"].queues["media"].job_ids


def files_of(app, submission_id: int) -> tuple[str, list[tuple[str, int]]]:
    with app.app_context():
        submission = db.session.get(Submission, submission_id)
        return submission.status, [(f.scan_state, f.scan_attempts) for f in submission.files]


def test_a_small_upload_is_clean_and_in_review_when_the_post_answers(inline_app):
    setup_people(inline_app)
    submission_id = post_upload(inline_app, "attendance.csv", CSV)  # asserts the 302

    assert files_of(inline_app, submission_id) == ("in_review", [("clean", 1)])
    assert scans_queued(inline_app) == [] and media_queued(inline_app) == []  # nothing left for a worker
    with inline_app.app_context():
        actions = [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]
    # The CSV's table too was made in the request (core/evidence/inline_preview.py), recorded as
    # the preview job records it.
    assert actions == ["submission.created", "file.uploaded", "file.scanned", "submission.ready_for_review",
                       "file.preview_made"]
    reviewer = inline_app.test_client()
    sign_in(reviewer, "reviewer")
    page = reviewer.get(f"/review/{submission_id}")
    assert page.status_code == 200 and 'data-testid="csv-' in page.text and "Grace" in page.text


def test_an_infected_small_file_rejects_the_submission_and_is_deleted_in_the_request(inline_app):
    people = setup_people(inline_app)
    submission_id, (file_id,) = submit(inline_app, people["owner"], [("eicar.csv", EICAR_BYTES)])

    assert files_of(inline_app, submission_id) == ("rejected", [("infected", 1)])
    with inline_app.app_context():
        assert db.session.get(EvidenceFile, file_id).scan_signature.startswith("Eicar")
    assert stored_keys(inline_app) == []
    assert scans_queued(inline_app) == []


def test_only_files_within_the_limit_together_are_scanned_in_the_request(inline_app):
    people = setup_people(inline_app)
    first, second = b"a,b\n" * (150 * KIB), b"c,d\n" * (150 * KIB)  # 600 KiB each; the limit is 1 MiB
    submission_id, (first_id, second_id) = submit(inline_app, people["owner"], [("a.csv", first), ("b.csv", second)])

    assert files_of(inline_app, submission_id) == ("scanning", [("clean", 1), ("pending", 0)])
    assert scans_queued(inline_app) == [f"scan-file-{second_id}-upload"]


def test_with_clamd_unreachable_the_files_stay_pending_and_their_usual_jobs_are_queued(make_app):
    app = make_app(AV_SCANNER="clamd", CLAMD_URL=f"tcp://127.0.0.1:{free_port()}", INLINE_SCAN_MAX_MB=1)
    people = setup_people(app)
    submission_id, file_ids = submit(app, people["owner"], [("attendance.csv", CSV), ("more.csv", CSV)])

    # Fail closed: never served, and the queued path (retries, sweeper) takes over. Only the first
    # file was tried: after one failure the request stops asking clamd.
    assert files_of(app, submission_id) == ("scanning", [("pending", 1), ("pending", 0)])
    assert sorted(scans_queued(app)) == sorted(f"scan-file-{i}-upload" for i in file_ids)
    assert len(stored_keys(app)) == 2


def test_zero_turns_the_inline_scan_off(make_app, clamd_server):
    clamd_server.start()
    app = make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.url, INLINE_SCAN_MAX_MB=0)
    people = setup_people(app)
    submission_id, (file_id,) = submit(app, people["owner"], [("attendance.csv", CSV)])
    assert files_of(app, submission_id) == ("scanning", [("pending", 0)])
    assert scans_queued(app) == [f"scan-file-{file_id}-upload"]


def test_a_clamd_that_never_answers_costs_the_request_one_timeout_then_the_queue(make_app):
    import socket

    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        app = make_app(AV_SCANNER="clamd", CLAMD_URL=f"tcp://127.0.0.1:{silent.getsockname()[1]}",
                       INLINE_SCAN_MAX_MB=1)
        people = setup_people(app)
        submission_id, file_ids = submit(app, people["owner"], [("a.csv", CSV), ("b.csv", CSV), ("c.csv", CSV)])

    assert files_of(app, submission_id) == ("scanning", [("pending", 1), ("pending", 0), ("pending", 0)])
    assert sorted(scans_queued(app)) == sorted(f"scan-file-{i}-upload" for i in file_ids)


def every_file_under(root) -> list[str]:
    import os

    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, names in os.walk(root) for f in names)


def test_a_spool_on_the_storage_disk_is_stored_whole_scanned_and_leaves_nothing_else(inline_app):
    """A part past the in-memory spool (500 KiB) is spooled on the local storage's disk and
    becomes the stored object (linked, not copied): the object holds exactly the bytes sent,
    they match the SHA-256 recorded, the file is clean in the request, and nothing else (no
    temporary file) is left in the storage root."""
    import hashlib

    from tests.evidence_support import local_root

    setup_people(inline_app)
    data = b"date,city,peers\n" + b"2025-01-15,Lisbon,12\n" * (40 * KIB)  # about 840 KiB
    submission_id = post_upload(inline_app, "big.csv", data)

    assert files_of(inline_app, submission_id) == ("in_review", [("clean", 1)])
    assert scans_queued(inline_app) == []
    with inline_app.app_context():
        file = db.session.query(EvidenceFile).filter_by(submission_id=submission_id).one()
        with inline_app.extensions["points"].storage.open(file.storage_key) as fh:
            stored = fh.read()
        actions = [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]
        from core.evidence.previews import read_table

        table = read_table(file)
    assert stored == data and file.sha256 == hashlib.sha256(data).hexdigest() and file.size_bytes == len(data)
    assert actions == ["submission.created", "file.uploaded", "file.scanned", "submission.ready_for_review",
                       "file.preview_made"]
    # The table, made from the linked spool, shows the file's first rows.
    assert [c["text"] for c in table["rows"][1]] == ["2025-01-15", "Lisbon", "12"] and table["truncated"]
    # The table is in the row: the one object stored is the evidence (no previews/ directory).
    assert every_file_under(local_root(inline_app)) == [file.storage_key]


def test_an_infected_file_spooled_on_the_storage_disk_is_rejected_and_gone(inline_app):
    setup_people(inline_app)
    data = b"a,b\n" * (200 * KIB) + EICAR_BYTES  # 800 KiB, the signature at the very end
    submission_id = post_upload(inline_app, "late.csv", data)

    assert files_of(inline_app, submission_id) == ("rejected", [("infected", 1)])
    from tests.evidence_support import local_root

    assert stored_keys(inline_app) == [] and every_file_under(local_root(inline_app)) == []
    assert scans_queued(inline_app) == []
    with inline_app.app_context():
        actions = [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]
    assert actions == ["submission.created", "file.uploaded", "file.infected", "submission.rejected"]


def previews_of(app, submission_id: int) -> list[str | None]:
    with app.app_context():
        return [f.preview_state
                for f in db.session.query(EvidenceFile).filter_by(submission_id=submission_id).order_by(EvidenceFile.id)]


def test_a_csv_past_the_inline_limit_gets_its_table_from_the_queued_job(inline_app):
    people = setup_people(inline_app)
    first, second = b"a,b\n" * (150 * KIB), b"c,d\n" * (150 * KIB)  # 600 KiB each; the limit is 1 MiB
    submission_id, (first_id, second_id) = submit(inline_app, people["owner"], [("a.csv", first), ("b.csv", second)])

    assert previews_of(inline_app, submission_id) == ["made", None]  # the first's table in the request
    from tests.evidence_support import run_worker

    run_worker(inline_app)  # the second: scan job, then its preview job
    assert files_of(inline_app, submission_id) == ("in_review", [("clean", 1), ("clean", 1)])
    assert previews_of(inline_app, submission_id) == ["made", "made"]


def test_a_table_needs_no_storage_beyond_the_evidence_itself(inline_app):
    """The table is kept in the row (core/evidence/csv_preview.py), so storage refusing anything
    under previews/ (here: a plain file where that folder would go) costs a CSV nothing: its table
    is made in the request and no preview job is queued. (As an object, the table fell back to
    a queued job then.)"""
    import os

    from tests.evidence_support import local_root

    people = setup_people(inline_app)
    blocker = os.path.join(local_root(inline_app), "previews")
    with open(blocker, "wb"):
        pass
    submission_id, (file_id,) = submit(inline_app, people["owner"], [("attendance.csv", CSV)])

    assert files_of(inline_app, submission_id) == ("in_review", [("clean", 1)])
    assert previews_of(inline_app, submission_id) == ["made"]
    assert media_queued(inline_app) == []
    with inline_app.app_context():
        # the blocker itself is listed as an object named "previews"; nothing was added beside it
        assert stored_keys(inline_app) == [db.session.get(EvidenceFile, file_id).storage_key, "previews"]


def test_a_stored_upload_does_not_stay_in_the_page_cache(inline_app):
    """Evidence is written once and read rarely: once the request is done with it, its stored
    object's pages leave the page cache (core/evidence/spooling.py, posix_fadvise DONTNEED), so a
    day of uploads does not push the database's pages out. fincore (util-linux) reads the kernel's
    count of the file's cached pages; the bytes themselves are unchanged."""
    import subprocess

    from tests.evidence_support import local_root

    setup_people(inline_app)
    data = b"date,city,peers\n" + b"2025-01-15,Lisbon,12\n" * (40 * KIB)  # about 840 KiB: spooled to disk
    submission_id = post_upload(inline_app, "big.csv", data)
    with inline_app.app_context():
        key = db.session.query(EvidenceFile).filter_by(submission_id=submission_id).one().storage_key
    path = "/".join([local_root(inline_app), key])
    resident = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert resident == "0", f"{resident} bytes of the stored upload still cached"
    with open(path, "rb") as fh:
        assert fh.read() == data
