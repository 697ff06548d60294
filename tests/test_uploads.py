"""Uploads on real PostgreSQL, Redis and storage: what is written, what is refused, and that a
refused or failed upload leaves no object and no row."""
from __future__ import annotations

import hashlib
import io
import re
import resource
import signal
import uuid
from contextlib import contextmanager
from datetime import date, timedelta

import pytest
from psycopg.errors import RaiseException
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from core.platform.db import db
from core.platform.errors import DomainError, PayloadTooLarge, StorageError, ValidationError
from core.evidence.uploads import add_files, create_submission
from core.platform.models import AuditEvent, EvidenceFile, Submission
from tests.evidence_support import (CLEAN_PDF, CSV, incoming, jpeg, minio_env, png, setup_people, stored_keys,
                                    submit, yesterday)
from tests.services.ports import free_port

MB = 1024 * 1024


def counts(app) -> tuple[int, int]:
    with app.app_context():
        return db.session.query(Submission).count(), db.session.query(EvidenceFile).count()


def test_accepted_files_are_stored_at_their_keys_and_pending(app, redis_conn):
    people = setup_people(app)
    files = [("report.pdf", CLEAN_PDF), ("photo.JPG", jpeg()), ("slide.png", png()), ("attendance.csv", CSV)]
    queue = app.extensions["points"].queues["scans"]
    seen_at_commit = []

    def before_commit(session):  # what Redis holds while the transaction is still open
        seen_at_commit.append(queue.count)

    event.listen(Session, "before_commit", before_commit)
    try:
        submission_id, file_ids = submit(app, people["owner"], files)
    finally:
        event.remove(Session, "before_commit", before_commit)
    assert seen_at_commit == [0], "scan jobs must reach Redis only after the commit"
    assert sorted(queue.job_ids) == sorted(f"scan-file-{i}-upload" for i in file_ids)

    with app.app_context():
        submission = db.session.get(Submission, submission_id)
        assert submission.status == "scanning"
        rows = submission.files
        assert [r.original_name for r in rows] == [n for n, _ in files]
        assert [r.ext for r in rows] == ["pdf", "jpg", "png", "csv"]
        storage = app.extensions["points"].storage
        for row, (_name, data) in zip(rows, files):
            assert re.fullmatch(rf"evidence/{people['owner']}/EXPLORE/[0-9a-f-]{{36}}\.{row.ext}", row.storage_key)
            assert row.storage_key == f"evidence/{people['owner']}/EXPLORE/{row.uuid}.{row.ext}"
            assert row.scan_state == "pending" and row.size_bytes == len(data)
            assert row.sha256 == hashlib.sha256(data).hexdigest()
            assert b"".join(storage.iter_chunks(row.storage_key)) == data
        actions = [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]
        assert actions == ["submission.created"] + ["file.uploaded"] * 4
        uploaded = db.session.query(AuditEvent).filter_by(action="file.uploaded").first()
        assert uploaded.details["declared_type"] == "application/octet-stream"
        assert uploaded.details["detected_type"] == "application/pdf"
    assert len(stored_keys(app)) == 4


def test_field_problems_are_reported_together_per_field(app):
    people = setup_people(app)
    with app.app_context(), pytest.raises(ValidationError) as caught:
        create_submission(people["owner"], "AMPLIFY", date.today() + timedelta(days=5),
                          counters={"peers": 51, "students": "many", "pets": 1}, note="x" * 2001, files=[])
    err = caught.value
    assert err.code == "submission_invalid" and err.status == 400
    fields = {d["field"]: d["issue"] for d in err.details}
    assert set(fields) == {"session_date", "counters.peers", "counters.students", "counters.pets", "note", "files"}
    assert fields["counters.peers"] == "Peers trained must be a whole number from 0 to 50."
    assert fields["session_date"] == "The session date cannot be in the future."
    assert fields["files"] == "Attach at least one file."
    assert counts(app) == (0, 0) and stored_keys(app) == []


@pytest.mark.parametrize("code, day, issue", [
    ("LEARN", None, "Learn is awarded automatically and takes no evidence."),
    ("NOPE", None, "Choose an activity from the list."),
    ("EXPLORE", date.today() - timedelta(days=400), "The session must have taken place within the last 365 days."),
    ("EXPLORE", "31/12/2024", "Enter the session date as YYYY-MM-DD."),
])
def test_activity_and_date_are_checked(app, code, day, issue):
    people = setup_people(app)
    with app.app_context(), pytest.raises(ValidationError) as caught:
        create_submission(people["owner"], code, day or yesterday(), files=[incoming("a.pdf", CLEAN_PDF)])
    assert {"field": "activity_code" if code != "EXPLORE" else "session_date", "issue": issue} in caught.value.details
    assert counts(app) == (0, 0) and stored_keys(app) == []


def test_amplify_counters_are_stored_as_integers(app):
    people = setup_people(app)
    submission_id, _ = submit(app, people["owner"], [("a.pdf", CLEAN_PDF)], activity="AMPLIFY",
                              counters={"peers": "12", "students": 150}, city="Lisbon")
    with app.app_context():
        assert db.session.get(Submission, submission_id).counters == {"peers": 12, "students": 150}


def test_too_many_files_are_refused(app):
    people = setup_people(app)
    with app.app_context(), pytest.raises(ValidationError) as caught:
        create_submission(people["owner"], "EXPLORE", yesterday(),
                          files=[incoming(f"{i}.pdf", CLEAN_PDF) for i in range(11)])
    assert {"field": "files", "issue": "Attach at most 10 files to one submission."} in caught.value.details
    assert counts(app) == (0, 0) and stored_keys(app) == []


class CountingStream(io.RawIOBase):
    """An endless client body that counts what the server takes from it."""

    def __init__(self):
        self.taken = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = b"a" * len(buffer)
        self.taken += len(buffer)
        return len(buffer)


def test_size_limit_is_enforced_while_reading(make_app):
    app = make_app(MAX_UPLOAD_MB=1)
    people = setup_people(app)
    endless = CountingStream()
    with app.app_context(), pytest.raises(PayloadTooLarge) as caught:
        create_submission(people["owner"], "EXPLORE", yesterday(),
                          files=[incoming("a.pdf", CLEAN_PDF), IncomingFileFrom("big.csv", endless)])
    assert endless.taken == MB + 1, "reading must stop one byte past the limit"
    err = caught.value
    assert (err.status, err.code) == (413, "file_too_large")
    assert err.details == [{"field": "files[1]", "issue": "larger than 1 MB"}]
    assert counts(app) == (0, 0) and stored_keys(app) == []


def IncomingFileFrom(name, stream):
    from core.evidence.uploads import IncomingFile

    return IncomingFile(field="files[1]", filename=name, stream=stream, declared_type="text/csv")


def test_exactly_the_limit_is_accepted_one_byte_more_is_not(make_app):
    app = make_app(MAX_UPLOAD_MB=1)
    people = setup_people(app)
    row = b"1,2,3\n"
    exact = (row * (MB // len(row) + 1))[:MB]
    _, [file_id] = submit(app, people["owner"], [("exact.csv", exact)])
    with pytest.raises(PayloadTooLarge):
        submit(app, people["owner"], [("over.csv", exact + b"\n")])
    with app.app_context():
        assert db.session.get(EvidenceFile, file_id).size_bytes == MB
    assert counts(app) == (1, 1) and len(stored_keys(app)) == 1


def test_unreachable_object_store_leaves_no_row(make_app, s3_endpoint):
    env = minio_env(s3_endpoint, f"t-{uuid.uuid4().hex[:12]}")
    env["MINIO_ENDPOINT"] = f"127.0.0.1:{free_port()}"
    app = make_app(**env)
    people = setup_people(app)
    with pytest.raises(StorageError) as caught:
        submit(app, people["owner"], [("a.pdf", CLEAN_PDF), ("b.png", png())])
    assert caught.value.status == 503 and caught.value.code == "storage_unavailable"
    assert counts(app) == (0, 0)


def test_storage_failing_on_the_second_file_removes_the_first(app):
    """A real write failure halfway: the process may not write files over 64 KiB (EFBIG), so
    the small first file is stored and the second, larger one fails."""
    people = setup_people(app)
    big_csv = b"a,b\n" * 40_000  # 160 KB, spooled in memory, so only storage writes hit the limit
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, old_limit[1]))
    try:
        with pytest.raises(StorageError):
            submit(app, people["owner"], [("small.pdf", CLEAN_PDF), ("big.csv", big_csv)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert counts(app) == (0, 0)
    assert stored_keys(app) == []
    assert app.extensions["points"].queues["scans"].count == 0


def test_database_failure_at_flush_removes_the_objects(app):
    setup_people(app)
    with pytest.raises(IntegrityError) as caught:  # no such user: the foreign key refuses the row
        submit(app, 987654, [("a.pdf", CLEAN_PDF), ("b.png", png())])
    assert "foreign key" in str(caught.value).lower()
    assert counts(app) == (0, 0)
    assert stored_keys(app) == []
    assert app.extensions["points"].queues["scans"].count == 0


@pytest.fixture
def fail_at_commit(app):
    """A deferred PostgreSQL constraint that fails at COMMIT for one file name: the failure
    comes after every object is written and every row flushed."""
    with failing_at_commit(app):
        yield


@contextmanager
def failing_at_commit(app):
    ddl = [
        "CREATE OR REPLACE FUNCTION test_fail_at_commit() RETURNS trigger AS $$ BEGIN "
        "IF NEW.original_name = 'boom-at-commit.pdf' THEN RAISE EXCEPTION 'refused at commit'; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE CONSTRAINT TRIGGER test_fail_at_commit AFTER INSERT ON evidence_files "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fail_at_commit()",
    ]
    with app.app_context():
        with db.engine.begin() as conn:
            for statement in ddl:
                conn.execute(text(statement))
    yield
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS test_fail_at_commit ON evidence_files"))
            conn.execute(text("DROP FUNCTION IF EXISTS test_fail_at_commit()"))


def test_database_failure_at_commit_removes_the_objects(app, fail_at_commit):
    people = setup_people(app)
    with pytest.raises(DBAPIError, match="refused at commit") as info:
        submit(app, people["owner"], [("fine.png", png()), ("boom-at-commit.pdf", CLEAN_PDF)])
    assert isinstance(info.value.orig, RaiseException)  # the trigger's, not some other failure
    assert counts(app) == (0, 0)
    assert stored_keys(app) == []
    assert app.extensions["points"].queues["scans"].count == 0


def test_a_csv_table_made_in_the_request_goes_with_a_failed_commit(make_app, clamd_server):
    """The table of a clean CSV is made before the upload's commit and kept in its row
    (core/evidence/inline_preview.py): a commit that fails leaves no row, no table, no object."""
    clamd_server.start()
    app = make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.url, CLAMD_TIMEOUT_SECONDS=10, INLINE_SCAN_MAX_MB=1)
    people = setup_people(app)
    _, (kept_id,) = submit(app, people["owner"], [("kept.csv", CSV)])
    with app.app_context():
        kept = db.session.get(EvidenceFile, kept_id)
        assert (kept.scan_state, kept.preview_state) == ("clean", "made")  # the table made in the request
    before = stored_keys(app)
    assert len(before) == 1  # the CSV alone: its table is in the row
    with failing_at_commit(app), pytest.raises(DBAPIError, match="refused at commit"):
        submit(app, people["owner"], [("sessions.csv", CSV), ("boom-at-commit.pdf", CLEAN_PDF)])
    assert counts(app) == (1, 1)
    assert stored_keys(app) == before


def test_add_files_after_changes_requested(app):
    people = setup_people(app)
    submission_id, _ = submit(app, people["owner"], [("a.pdf", CLEAN_PDF)])
    with app.app_context():
        with pytest.raises(ValidationError) as caught:  # still scanning: nothing to resubmit
            add_files(submission_id, people["owner"], [incoming("b.pdf", CLEAN_PDF)])
        assert caught.value.code == "submission_not_editable"
        db.session.get(Submission, submission_id).status = "changes_requested"
        db.session.commit()
        with pytest.raises(DomainError) as caught:
            add_files(submission_id, people["other"], [incoming("b.pdf", CLEAN_PDF)])
        assert caught.value.code == "submission_not_found"
        submission = add_files(submission_id, people["owner"], [incoming("b.csv", CSV, field="files[0]")])
        assert (submission.status, submission.revision) == ("scanning", 2)
        assert [f.original_name for f in submission.files] == ["a.pdf", "b.csv"]
        assert submission.files[1].scan_state == "pending"
    assert len(stored_keys(app)) == 2


def test_the_web_spool_measures_parts_as_they_arrive_and_keeps_nothing_past_the_limit():
    import os

    from core.evidence.spooling import TooLarge, UploadSpool, read_once

    def fill(spool, data: bytes, step: int = 700 * 1024):
        for i in range(0, len(data), step):  # the parser's writes: ~1 MiB reads, arbitrary cuts
            spool.write(data[i:i + step])
        spool.seek(0)
        return spool

    limit = 2 * MB
    over = fill(UploadSpool(limit, pdf=False), os.urandom(3 * MB))
    with pytest.raises(TooLarge):
        read_once(over, limit, pdf=False)
    assert len(over.read()) == limit + 1  # the rest of the part was drained, not stored

    pdf = b"%PDF-1.7\n" + os.urandom(MB) + b"/OpenAction << /S /JavaScript >>" + os.urandom(1000)
    cut = pdf.index(b"/JavaScript") + 4  # the first write ends inside the name: "/Jav" | "aScript"
    body = read_once(fill(UploadSpool(limit, pdf=True), pdf, step=cut), limit, pdf=True)
    assert (body.size, body.sha256, body.pdf_action) == (len(pdf), hashlib.sha256(pdf).hexdigest(), "JavaScript")
    assert body.stream.read() == pdf


@pytest.mark.parametrize("typed", ["٥", "１２", "1_0", "²", "1e3", "1234567890"])
def test_counts_take_ascii_digits_only(app, typed):
    """A count typed with other scripts' digits ("٥", "１２") or with "1_0" is refused at its
    field, as the API and the command line refuse them, instead of silently read as a number;
    nothing is stored."""
    people = setup_people(app)
    with app.app_context(), pytest.raises(ValidationError) as caught:
        create_submission(people["owner"], "AMPLIFY", date.today(), counters={"peers": typed, "students": "3"},
                          files=[])
    fields = {d["field"]: d["issue"] for d in caught.value.details}
    assert fields["counters.peers"] == "Peers trained must be a whole number from 0 to 50."
    assert "counters.students" not in fields
    assert counts(app) == (0, 0) and stored_keys(app) == []
