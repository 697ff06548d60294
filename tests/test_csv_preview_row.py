"""A CSV's preview table lives in its evidence_files row (migration 0013), not as an object:
made by the job or in the request, shown to the reviewer, gone with its file (removed by the
uploader, deleted by retention, aged past the cutoff), and a table made before 0013 (an object)
is still shown."""
from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from core.evidence.corrections import Correction, resend
from core.evidence.previews import table_key
from core.platform.db import db
from core.platform.models import EvidenceFile, Submission
from core.retention.enforcement import enforce_user_retention
from tests.evidence_support import CLEAN_PDF, CSV, run_worker, setup_people, sign_in, stored_keys, submit, yesterday
from tests.test_retention import backdate


def raw_table(app, file_id: int):
    """The column as the database holds it (NULL -> None), not as the ORM caches it."""
    with app.app_context():
        return db.session.execute(text("SELECT preview_table FROM evidence_files WHERE id = :i"),
                                  {"i": file_id}).scalar_one()


def review_page(app, file_id: int) -> str:
    with app.app_context():
        submission_id = db.session.get(EvidenceFile, file_id).submission_id
    client = app.test_client()
    sign_in(client, "reviewer")
    return client.get(f"/review/{submission_id}").get_data(as_text=True)


def test_the_preview_job_keeps_the_table_in_the_row_and_stores_no_object(app):
    owner = setup_people(app)["owner"]
    _, (file_id,) = submit(app, owner, [("sessions.csv", CSV)])
    run_worker(app)  # scan, then the preview job (no in-request scan in this app)
    table = raw_table(app, file_id)
    if isinstance(table, str):  # SQLite hands JSON back as text through a raw query
        table = json.loads(table)
    assert [c["text"] for c in table["rows"][1]] == ["Ada", "3", "20"] and not table["truncated"]
    assert not [k for k in stored_keys(app) if k.startswith("previews/")]
    html = review_page(app, file_id)
    assert 'data-testid="csv-' in html and "Grace" in html


def test_lists_of_files_do_not_load_the_table(app):
    """Deferred: the queue and the submission pages load files without their tables' bytes."""
    owner = setup_people(app)["owner"]
    _, (file_id,) = submit(app, owner, [("sessions.csv", CSV)])
    run_worker(app)
    with app.app_context():
        file = db.session.get(EvidenceFile, file_id)
        assert "preview_table" not in file.__dict__  # not loaded with the row
        assert file.preview_table["rows"]  # loaded when asked for


def test_the_review_page_reads_every_csv_table_in_its_one_query_of_the_files(app):
    """Three CSVs, three tables on the page, and evidence_files read once (the deferred column
    undeferred for the detail page), not once more per table."""
    from sqlalchemy import event

    owner = setup_people(app)["owner"]
    tables = [f"name,sessions\nPerson{n},{n}\n".encode() for n in range(3)]
    _, file_ids = submit(app, owner, [(f"s{n}.csv", data) for n, data in enumerate(tables)])
    run_worker(app)
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        html = review_page(app, file_ids[0])
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert all(f"Person{n}" in html for n in range(3))
    file_reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM evidence_files" in s
                  and "preview_table" in s]
    assert len(file_reads) == 1, file_reads


def test_a_table_made_before_0013_is_read_from_its_object(app):
    owner = setup_people(app)["owner"]
    _, (file_id,) = submit(app, owner, [("old.csv", CSV)])
    run_worker(app)
    legacy = {"rows": [[{"text": "From the object", "formula": False}]], "truncated": False, "formulas": 0}
    with app.app_context():
        file = db.session.get(EvidenceFile, file_id)
        file.preview_table = None  # as every row made before the column was
        body = json.dumps(legacy).encode()
        app.extensions["points"].storage.put(table_key(file), io.BytesIO(body), len(body), "application/json")
        db.session.commit()
    assert "From the object" in review_page(app, file_id)


def test_a_file_the_uploader_removes_takes_its_table(app):
    ids = setup_people(app)
    sid, (csv_id, _pdf_id) = submit(app, ids["owner"], [("wrong.csv", CSV), ("right.pdf", CLEAN_PDF)])
    run_worker(app)
    assert raw_table(app, csv_id) is not None
    with app.app_context():
        db.session.get(Submission, sid).status = "changes_requested"
        db.session.commit()
        resend(sid, ids["owner"], Correction(session_date=yesterday(), remove=[csv_id]))
    assert raw_table(app, csv_id) is None


def test_retention_takes_the_table_of_a_deleted_file_and_of_one_past_the_cutoff(app):
    owner = setup_people(app)["owner"]
    _, (old_id, aged_id, young_id) = submit(app, owner, [("old.csv", CSV), ("aged.csv", CSV + b"x,1,2\n"),
                                                         ("young.csv", CSV + b"y,1,2\n")])
    run_worker(app)
    cutoff = datetime.now(timezone.utc) - timedelta(days=730)
    with app.app_context():
        old = db.session.get(EvidenceFile, old_id)
        backdate(app, old.storage_key, cutoff - timedelta(minutes=1))
        # `aged`: its row is older than the cutoff but its object is not (rewritten since), so
        # the file stays; its table, made from the old bytes, is past the cutoff all the same.
        db.session.execute(text("UPDATE evidence_files SET created_at = :t WHERE id IN (:a, :b)"),
                           {"t": cutoff - timedelta(days=1), "a": old_id, "b": aged_id})
        db.session.commit()
        enforce_user_retention(owner, cutoff)
    assert raw_table(app, old_id) is None and raw_table(app, aged_id) is None
    assert raw_table(app, young_id) is not None
    with app.app_context():
        aged = db.session.get(EvidenceFile, aged_id)
        assert aged.deleted_at is None
        assert (aged.preview_state, aged.preview_reason) == ("failed", "The preview was removed under the retention policy.")
        assert db.session.get(EvidenceFile, old_id).deleted_at is not None
