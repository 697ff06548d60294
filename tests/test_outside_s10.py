"""Tenth session's outside pass over the last change (a CSV's preview table in evidence_files,
migration 0013; posix_fadvise(DONTNEED) when an upload spool closes), as a hostile client and as
the next engineer. Five of these failed on the code as reviewed (7f97a8c) and pass since the
fixes: a spool never linked is not written back, an anonymous form part costs the evidence disk
nothing, retention that clears an aged table says so, a made CSV preview whose table is gone says
so, a UTF-16 CSV is shown as text with its formulas marked. The rest are guards for behaviour
that held."""
from __future__ import annotations

import io
import json
import os
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, inspect, text

from core.evidence.csv_preview import CSV_HEAD_BYTES, csv_table
from core.evidence.previews import csv_outcome, read_table
from core.platform.db import db, utcnow
from core.platform.models import AuditEvent, EvidenceFile, Submission
from core.retention.enforcement import enforce_user_retention
from tests.conftest import app_on_migrations
from tests.evidence_support import CSV, local_root, minio_env, run_worker, setup_people, sign_in, submit, yesterday
from tests.test_inline_scan import inline_app  # noqa: F401

KIB = 1024


def _pad_rows(head: bytes = b"h1,h2\n") -> bytes:
    """Rows of plain text past filetypes.HEAD_BYTES (8 KiB, what the type check reads) within the
    table's 20 rows: whatever follows reaches the table unchecked."""
    return head + b"".join(b"%d,%s\n" % (i, b"p" * 460) for i in range(18))


TAIL = {
    # After the first 8 KiB: bytes the type check would refuse at the start of a file.
    "nul and control bytes": b"a\x00b,\x01\x02\x1b[31m\x7f,x\n",
    "invalid utf-8 and CESU surrogate bytes": b"\xed\xa0\x80\xed\xb0\x80,\xff\xfe\xc3,\xf4\x90\x80\x80\n",
    "literal backslash-u0000": b"\\u0000,\\ud800,\"\\\"\"\n",
    "200 four-byte emoji": ("\U0001F600" * 250).encode() + b",x\n",
    "200 control characters": b"\x01" * 250 + b",x\n",
    "markup": b"<script>alert(1)</script>,</td></tr></table>\n",
}

WHOLE = {
    "bom": b"\xef\xbb\xbfname,points\nGrace,3\n",
    "utf16 bom": "name,points\nGrace,3\n".encode("utf-16"),
    "cr only": b"a,b\r1,2\r3,4\r",
    "only separators": b",,,,,,,,,,,,,,,,,,,,,,,,,\n" * 30,
    "5000 columns": b",".join(b"c%d" % i for i in range(5000)) + b"\n",
    "quoted newline": b'a,"line one\nline two",c\n1,2,3\n',
    "largest json": b"".join(b",".join([("\u00e9" * 200).encode()] * 20) + b"\n" for _ in range(7)),
}
ODD = {**{f"tail: {k}": _pad_rows() + v for k, v in TAIL.items()}, **WHOLE}


def _as_object_did(data: bytes) -> dict:
    """What the page got before 0013: the table through json.dumps -> object -> json.loads."""
    head = data[:CSV_HEAD_BYTES]
    return json.loads(json.dumps(csv_table(head, complete=len(data) <= len(head))))


def _raw_table(app, file_id: int):
    with app.app_context():
        value = db.session.execute(text("SELECT preview_table FROM evidence_files WHERE id = :i"),
                                   {"i": file_id}).scalar_one()
    return json.loads(value) if isinstance(value, str) else value


def _post(app, name: str, data: bytes, **fields):
    client = app.test_client()
    sign_in(client, "owner")
    return client.post("/submissions/new", data={
        "activity_code": "EXPLORE", "session_date": yesterday().isoformat(), "city": "Leeds", **fields,
        "files": (io.BytesIO(data), name, "text/csv")}, content_type="multipart/form-data")


def _review_html(app, submission_id: int) -> tuple[int, str]:
    client = app.test_client()
    sign_in(client, "reviewer")
    page = client.get(f"/review/{submission_id}")
    return page.status_code, page.get_data(as_text=True)


# ---- odd CSV content into the JSON column (guards: they held) ---------------------------------

@pytest.mark.parametrize("name", list(ODD))
def test_an_odd_csv_table_reaches_the_row_in_the_request_and_shows_as_the_object_did(inline_app, name):
    """PostgreSQL's json (not jsonb) takes \\u0000; decode(errors="replace") leaves no lone
    surrogate for it to refuse. The row holds exactly what the object held."""
    setup_people(inline_app)
    data = ODD[name]
    response = _post(inline_app, "odd.csv", data)
    assert response.status_code == 302, (name, response.status_code, response.text[:300])
    if response.status_code != 302:
        return
    sid = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    with inline_app.app_context():
        f = db.session.query(EvidenceFile).filter_by(submission_id=sid).one()
        file_id, state = f.id, f.preview_state
    assert state == "made", name
    assert _raw_table(inline_app, file_id) == _as_object_did(data)
    status, html = _review_html(inline_app, sid)
    assert status == 200 and f'data-testid="csv-{file_id}"' in html
    assert "<script>alert" not in html


@pytest.mark.parametrize("name", ["tail: nul and control bytes", "tail: 200 four-byte emoji", "largest json"])
def test_an_odd_csv_table_made_by_the_job_is_the_same(app, name):
    owner = setup_people(app)["owner"]
    _, (file_id,) = submit(app, owner, [("odd.csv", ODD[name])])
    run_worker(app)
    assert _raw_table(app, file_id) == _as_object_did(ODD[name])


@pytest.fixture(params=["postgresql", "sqlite"])
def migrated(request, tmp_path):
    from core.points.catalogue import seed_catalogue

    with app_on_migrations(request.param, tmp_path, "s10") as app:
        seed_catalogue()
        db.session.commit()
        yield app


def _file_row(uploader_id: int, name: str) -> EvidenceFile:
    s = Submission(user_id=uploader_id, activity_code="EXPLORE", status="in_review", session_date=date(2024, 1, 1),
                   counters={})
    db.session.add(s)
    db.session.flush()
    f = EvidenceFile(submission_id=s.id, user_id=uploader_id, activity_code="EXPLORE", storage_key=f"evidence/s10/{name}.csv",
                     original_name=f"{name}.csv", ext="csv", content_type="text/csv", size_bytes=10,
                     sha256=name.ljust(64, "0"), scan_state="clean")
    db.session.add(f)
    db.session.flush()
    return f


def test_odd_tables_round_trip_on_both_databases(migrated):
    """SQLite as well as PostgreSQL: the column built by the migrations takes every odd table."""
    from core.accounts.users import create_user
    from core.evidence.previews import record_outcome

    uploader = create_user("s10@example.com", "uploader", "a-long-password-1")[0]
    db.session.flush()
    ids = {}
    for i, (name, data) in enumerate(ODD.items()):
        f = _file_row(uploader.id, f"odd{i}")
        record_outcome(f, csv_outcome(data[:CSV_HEAD_BYTES], len(data)))
        ids[name] = f.id
    db.session.commit()
    db.session.expire_all()
    for name, file_id in ids.items():
        f = db.session.get(EvidenceFile, file_id)
        assert read_table(f) == _as_object_did(ODD[name]), name


# ---- migration 0013 down and up ---------------------------------------------------------------

def _evidence_indexes() -> dict:
    if db.engine.dialect.name == "sqlite":
        return dict(db.session.execute(text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'evidence_files' "
            "AND sql IS NOT NULL")).all())
    return dict(db.session.execute(text(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'evidence_files'")).all())


def test_0013_down_and_up_keeps_every_evidence_files_index_as_it_was(migrated):
    """SQLite's downgrade rebuilds the table (batch mode): the band indexes must keep their
    `WHERE phash IS NOT NULL`, and a row's other columns must survive."""
    from flask_migrate import downgrade, upgrade

    from core.accounts.users import create_user

    uploader = create_user("s10@example.com", "uploader", "a-long-password-1")[0]
    db.session.flush()
    f = _file_row(uploader.id, "kept")
    f.preview_table = {"rows": [[{"text": "x", "formula": False}]], "truncated": False, "formulas": 0}
    f.preview_state = "made"
    file_id = f.id
    db.session.commit()
    before = _evidence_indexes()
    assert any("phash IS NOT NULL" in (sql or "") for sql in before.values())
    db.session.remove()
    downgrade(revision="0012_name_lower")
    assert "preview_table" not in {c["name"] for c in inspect(db.engine).get_columns("evidence_files")}
    assert _evidence_indexes() == before
    db.session.remove()
    upgrade()
    assert _evidence_indexes() == before
    assert db.session.execute(text("SELECT original_name, preview_state, preview_table FROM evidence_files "
                                   "WHERE id = :i"), {"i": file_id}).one() == ("kept.csv", "made", None)


# ---- bulk loads do not load the table; no JSON answer carries it (guards) ---------------------

def test_list_pages_and_the_file_api_never_select_the_table(app):
    people = setup_people(app)
    sid, (file_id,) = submit(app, people["owner"], [("sessions.csv", CSV)])
    run_worker(app)
    statements = []

    def keep(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", keep)
    try:
        reviewer, owner, admin = app.test_client(), app.test_client(), app.test_client()
        sign_in(reviewer, "reviewer")
        sign_in(owner, "owner")
        sign_in(admin, "admin")
        statements.clear()
        for client, url in ((reviewer, "/review"), (reviewer, "/review?status=in_review"), (owner, "/submissions"),
                            (owner, f"/submissions/{sid}"), (owner, f"/submissions/{sid}/status.json"),
                            (owner, f"/api/files/{file_id}/signed-url"), (admin, "/admin/unscannable"),
                            (admin, "/admin"), (admin, "/admin/operations"), (admin, "/admin/retention")):
            response = client.get(url)
            assert response.status_code < 500, (url, response.status_code)
            assert "Grace" not in response.get_data(as_text=True), url
        assert owner.get(f"/api/files/{file_id}").status_code == 200  # the file itself: its row only
        assert not [s for s in statements if "preview_table" in s]
        statements.clear()
        status, html = _review_html(app, sid)
        assert status == 200 and "Grace" in html
        assert len([s for s in statements if "preview_table" in s]) == 1  # one CSV, one look-up
    finally:
        event.remove(engine, "before_cursor_execute", keep)


# ---- deletion and races (guards) ---------------------------------------------------------------

def test_a_preview_job_that_finishes_after_its_file_was_deleted_records_no_table(app):
    """The job read the file, retention deleted it meanwhile, then the job stores its outcome."""
    from core.evidence.previews import _store

    owner = setup_people(app)["owner"]
    _, (file_id,) = submit(app, owner, [("late.csv", CSV)])
    with app.app_context():
        f = db.session.get(EvidenceFile, file_id)
        f.scan_state = "clean"
        db.session.commit()
        outcome = csv_outcome(CSV, len(CSV))  # made from the bytes before the delete
        db.session.get(EvidenceFile, file_id).mark_deleted(utcnow())
        db.session.commit()
        assert _store(file_id, outcome) is None
    assert _raw_table(app, file_id) is None


def test_a_table_with_a_minio_store_is_made_in_the_request_from_a_large_spool(make_app, clamd_server, s3_endpoint):
    """No linkable spool with MinIO (no spool_dir): no fadvise, the table still comes from the part."""
    import uuid

    clamd_server.start()
    app = make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.url, CLAMD_TIMEOUT_SECONDS=10, INLINE_SCAN_MAX_MB=2,
                   **minio_env(s3_endpoint, f"t-{uuid.uuid4().hex[:12]}"))
    setup_people(app)
    data = b"date,city,peers\n" + b"2025-01-15,Lisbon,12\n" * (40 * KIB)  # ~840 KiB: past the memory spool
    response = _post(app, "big.csv", data)
    assert response.status_code == 302, response.text[:300]
    sid = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    with app.app_context():
        f = db.session.query(EvidenceFile).filter_by(submission_id=sid).one()
        assert (f.scan_state, f.preview_state) == ("clean", "made")
        file_id = f.id
        with app.extensions["points"].storage.open(f.storage_key) as fh:
            assert fh.read() == data
    assert _raw_table(app, file_id) == _as_object_did(data)


# ---- FAILS: the fadvise writes back spools that are thrown away ---------------------------------

def _cancelled_write_bytes() -> int:
    with open("/proc/self/io") as fh:
        return int(next(line for line in fh if line.startswith("cancelled_write_bytes")).split()[1])


def test_a_spool_never_linked_is_not_written_back_to_disk_when_it_closes(tmp_path):
    """spooling.UploadSpool.close says "Pages of a file never linked are freed by the close
    anyway", but it calls posix_fadvise(DONTNEED) on every spool that moved to the storage's disk
    (`_linkable` is set at rollover, not at Storage.adopt). On a dirty, never-linked O_TMPFILE
    DONTNEED starts writeback first (filemap_fdatawrite), so bytes about to be discarded are sent to
    the evidence disk instead of being dropped from the page cache (cancelled_write_bytes)."""
    from core.evidence.spooling import UploadSpool

    size = 8 * 1024 * KIB
    spool = UploadSpool(size * 2, pdf=False, directory=str(tmp_path))
    chunk = os.urandom(KIB * KIB)
    for _ in range(size // len(chunk)):
        spool.write(chunk)
    assert spool.disk_file() is not None  # on the storage's disk, never linked (a refused part)
    before = _cancelled_write_bytes()
    spool.close()
    cancelled = _cancelled_write_bytes() - before
    assert cancelled >= size // 2, f"only {cancelled} of {size} dirty bytes dropped: the rest went to disk"


def test_an_anonymous_multipart_post_costs_the_evidence_disk_no_writes(app, tmp_path):
    """Any form request's file part is spooled on the storage's disk (form_parsing: UploadSpool for
    every part, any route, before sign-in). An anonymous client posting a large part to /login now
    makes the server write it to the evidence disk at the end of the request (the fadvise above);
    before, the part's dirty pages were dropped by the close."""
    size = 8 * 1024 * KIB
    client = app.test_client()
    before = _cancelled_write_bytes()
    response = client.post("/login", data={"email": "x@example.com", "password": "nope",
                                           "junk": (io.BytesIO(os.urandom(size)), "junk.bin")},
                           content_type="multipart/form-data")
    cancelled = _cancelled_write_bytes() - before
    assert response.status_code < 500
    assert cancelled >= size // 2, f"only {cancelled} of {size} dirty bytes dropped: the rest went to disk"


# ---- FAILS: retention that only clears aged tables leaves no trace ----------------------------

def test_retention_that_clears_an_aged_table_says_so(app):
    """A CSV whose row is past the cutoff but whose object is not (rewritten since: the case
    test_csv_preview_row makes): retention clears its table and marks its preview failed, but
    every count stays 0, so no `retention.enforced` audit event is written and a dry run reports
    nothing to delete. Before 0013 the table was an object and counted in previews_deleted."""
    owner = setup_people(app)["owner"]
    _, (file_id,) = submit(app, owner, [("aged.csv", CSV)])
    run_worker(app)
    cutoff = datetime.now(timezone.utc) - timedelta(days=730)
    with app.app_context():
        db.session.execute(text("UPDATE evidence_files SET created_at = :t WHERE id = :i"),
                           {"t": cutoff - timedelta(days=1), "i": file_id})
        db.session.commit()
        dry = enforce_user_retention(owner, cutoff, dry_run=True)
        counts = enforce_user_retention(owner, cutoff)
        events = db.session.query(AuditEvent).filter_by(action="retention.enforced").count()
    assert _raw_table(app, file_id) is None  # it did go
    assert any(dry.as_dict().values()), f"the dry run announces nothing: {dry.as_dict()}"
    assert any(counts.as_dict().values()) and events == 1, (counts.as_dict(), events)


# ---- FAILS (low): a made CSV preview with no table anywhere shows an empty box -------------------

def test_a_made_csv_preview_whose_table_is_gone_says_so_on_the_review_page(app):
    """After 0013 is downgraded and upgraded again (its docstring: those CSVs "show no table"), or
    a legacy table.json removed, the file says `made` with neither column nor object: the
    reviewer gets the file's heading and an empty box, no "No preview: ..." line, and the preview
    sweep never remakes it (preview_state is final)."""
    owner = setup_people(app)["owner"]
    sid, (file_id,) = submit(app, owner, [("gone.csv", CSV)])
    run_worker(app)
    with app.app_context():
        db.session.execute(text("UPDATE evidence_files SET preview_table = NULL WHERE id = :i"), {"i": file_id})
        db.session.commit()
    status, html = _review_html(app, sid)
    section = html.split(f'id="preview-{file_id}"', 1)[1].split("</section>", 1)[0]
    assert status == 200
    assert f'data-testid="csv-{file_id}"' in section or f'data-testid="no-preview-{file_id}"' in section, section


# ---- FAILS (pre-existing, now in the row): a UTF-16 CSV's formulas go unmarked ---------------------

def test_a_utf16_csv_is_shown_as_text_with_its_formulas_marked(inline_app):
    """filetypes accepts UTF-16 with a BOM (what Excel's "Unicode text" writes), but csv_table
    decodes every CSV as UTF-8: the reviewer sees "\\ufffd\\ufffdn\\x00a\\x00m\\x00e..." and, as
    every cell then starts with NUL, no cell is marked as a formula. An uploader who saves the
    file as UTF-16 hides `=HYPERLINK(...)` / `=cmd|...` from the formula warning, which the
    reviewer then opens in a spreadsheet. Held before this change too (HEAD~1's csv_table)."""
    setup_people(inline_app)
    data = 'name,link\nAda,=HYPERLINK("http://evil.example","x")\n'.encode("utf-16")
    response = _post(inline_app, "sessions.csv", data)
    assert response.status_code == 302, response.text[:300]
    sid = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    with inline_app.app_context():
        file_id = db.session.query(EvidenceFile).filter_by(submission_id=sid).one().id
    table = _raw_table(inline_app, file_id)
    assert table["rows"][0][0]["text"] == "name", table["rows"][0]
    assert table["formulas"] == 1
