"""Eleventh session's outside pass over review_detail loading the files with their CSV tables
in one query (selectinload(Submission.files).undefer(EvidenceFile.preview_table)): deleted and
removed files, legacy (object) tables, JSON null vs SQL NULL, 0 / 25 / mixed files, missing and
huge ids, the page twice in one session, a full 20x20 table of 200-character cells."""
from __future__ import annotations

import io
import json

from sqlalchemy import event, text

from core.evidence.corrections import Correction, resend
from core.evidence.csv_preview import CSV_CELL_CHARS, CSV_COLUMNS, CSV_ROWS
from core.evidence.previews import table_key
from core.platform.db import db, utcnow
from core.platform.models import EvidenceFile, Submission
from tests.evidence_support import CLEAN_PDF, CSV, png, run_worker, setup_people, sign_in, submit, yesterday


def _get(app, path: str, client=None):
    client = client or app.test_client()
    if client is not None and not getattr(client, "_signed", False):
        sign_in(client, "reviewer")
        client._signed = True
    return client.get(path)


def _page(app, sid: int, client=None) -> str:
    r = _get(app, f"/review/{sid}", client)
    assert r.status_code == 200, r.get_data(as_text=True)[:800]
    return r.get_data(as_text=True)


def _csv(tag: str) -> bytes:
    return f"name,n\n{tag},1\n".encode()


def test_deleted_file_shows_no_table_and_others_still_show(app):
    owner = setup_people(app)["owner"]
    sid, (a, b) = submit(app, owner, [("a.csv", _csv("AlphaRow")), ("b.csv", _csv("BetaRow"))])
    run_worker(app)
    with app.app_context():
        db.session.get(EvidenceFile, a).mark_deleted(utcnow())
        db.session.commit()
    html = _page(app, sid)
    assert "AlphaRow" not in html and f'data-testid="csv-{a}"' not in html
    assert "BetaRow" in html and f'data-testid="csv-{b}"' in html


def test_deleted_at_set_but_table_left_in_row_is_not_shown(app):
    """deleted_at set by hand (not mark_deleted): the table bytes are still in the row and are
    now loaded eagerly, but the page must not show them."""
    owner = setup_people(app)["owner"]
    sid, (a,) = submit(app, owner, [("a.csv", _csv("GhostRow"))])
    run_worker(app)
    with app.app_context():
        db.session.execute(text("UPDATE evidence_files SET deleted_at = now() WHERE id = :i"), {"i": a})
        db.session.commit()
    assert "GhostRow" not in _page(app, sid)


def test_file_removed_by_correction(app):
    ids = setup_people(app)
    sid, (csv_id, _pdf) = submit(app, ids["owner"], [("wrong.csv", _csv("WrongRow")), ("right.pdf", CLEAN_PDF)])
    run_worker(app)
    with app.app_context():
        db.session.get(Submission, sid).status = "changes_requested"
        db.session.commit()
        resend(sid, ids["owner"], Correction(session_date=yesterday(), remove=[csv_id]))
    html = _page(app, sid)
    assert "WrongRow" not in html and f'data-testid="csv-{csv_id}"' not in html


def test_legacy_object_table_and_row_table_side_by_side(app):
    owner = setup_people(app)["owner"]
    sid, (old, new) = submit(app, owner, [("old.csv", _csv("RowTable0")), ("new.csv", _csv("RowTable1"))])
    run_worker(app)
    legacy = {"rows": [[{"text": "FromTheObject", "formula": False}]], "truncated": False, "formulas": 0}
    with app.app_context():
        f = db.session.get(EvidenceFile, old)
        f.preview_table = None
        body = json.dumps(legacy).encode()
        app.extensions["points"].storage.put(table_key(f), io.BytesIO(body), len(body), "application/json")
        db.session.commit()
    html = _page(app, sid)
    assert "FromTheObject" in html and "RowTable0" not in html and "RowTable1" in html


def test_json_null_vs_sql_null_vs_missing_object(app):
    """'null'::json in the column (not SQL NULL) reads as None: falls back to the object; no
    object -> the 'no longer stored' line, not a 500."""
    owner = setup_people(app)["owner"]
    sid, (j, s) = submit(app, owner, [("j.csv", _csv("JsonNull")), ("s.csv", _csv("SqlNull"))])
    run_worker(app)
    with app.app_context():
        db.session.execute(text("UPDATE evidence_files SET preview_table = 'null'::json WHERE id = :i"), {"i": j})
        db.session.execute(text("UPDATE evidence_files SET preview_table = NULL WHERE id = :i"), {"i": s})
        db.session.commit()
    html = _page(app, sid)
    assert "JsonNull" not in html and "SqlNull" not in html
    assert f'data-testid="no-preview-{j}"' in html and f'data-testid="no-preview-{s}"' in html


def test_json_non_object_values_in_column(app):
    """A table column holding a JSON value of the wrong shape (an empty object, a list): the
    page must still render."""
    owner = setup_people(app)["owner"]
    sid, (a, b) = submit(app, owner, [("a.csv", _csv("A")), ("b.csv", _csv("B"))])
    run_worker(app)
    with app.app_context():
        db.session.execute(text("UPDATE evidence_files SET preview_table = '{}'::json WHERE id = :i"), {"i": a})
        db.session.execute(text("UPDATE evidence_files SET preview_table = '{\"rows\": []}'::json WHERE id = :i"),
                           {"i": b})
        db.session.commit()
    _page(app, sid)


def test_zero_files(app):
    owner = setup_people(app)["owner"]
    sid, (a,) = submit(app, owner, [("a.csv", _csv("Only"))])
    with app.app_context():
        db.session.execute(text("DELETE FROM evidence_files WHERE id = :i"), {"i": a})
        db.session.commit()
    html = _page(app, sid)
    assert "Only" not in html


def test_twenty_five_files_one_query_all_tables(app):
    owner = setup_people(app)["owner"]
    sid, (first,) = submit(app, owner, [("base.csv", _csv("Seed"))])
    run_worker(app)
    with app.app_context():
        base = db.session.get(EvidenceFile, first)
        cols = [c.key for c in EvidenceFile.__table__.columns if c.key != "id"]
        for n in range(24):
            values = {c: getattr(base, c) for c in cols}
            values.update(uuid=__import__("uuid").uuid4(), storage_key=f"{base.storage_key}-copy{n}", original_name=f"c{n}.csv",
                          preview_table={"rows": [[{"text": f"Copy{n:02d}Cell", "formula": False}]],
                                         "truncated": False, "formulas": 0})
            db.session.add(EvidenceFile(**values))
        db.session.commit()
        engine = db.engine
    seen: list[str] = []

    def hook(_c, _cur, statement, *_a):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", hook)
    try:
        html = _page(app, sid)
    finally:
        event.remove(engine, "before_cursor_execute", hook)
    assert "Seed" in html and all(f"Copy{n:02d}Cell" in html for n in range(24))
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT") and "FROM evidence_files" in s
             and "preview_table" in s]
    assert len(reads) == 1, reads


def test_mixed_pdf_png_csv(app):
    owner = setup_people(app)["owner"]
    sid, (p, i, c) = submit(app, owner, [("a.pdf", CLEAN_PDF), ("b.png", png()), ("c.csv", _csv("MixedRow"))])
    run_worker(app)
    html = _page(app, sid)
    assert "MixedRow" in html and f'data-testid="csv-{c}"' in html
    assert f'data-testid="csv-{p}"' not in html and f'data-testid="csv-{i}"' not in html


def test_missing_and_huge_ids(app):
    setup_people(app)
    client = app.test_client()
    sign_in(client, "reviewer")
    for path in ("/review/99999999", "/review/9223372036854775807", "/review/9223372036854775808",
                 "/review/99999999999999999999", "/review/0", "/review/-1", "/review/00001"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code, r.get_data(as_text=True)[:400])


def test_page_twice_in_one_session(app):
    owner = setup_people(app)["owner"]
    sid, (a,) = submit(app, owner, [("a.csv", _csv("TwiceRow"))])
    run_worker(app)
    client = app.test_client()
    sign_in(client, "reviewer")
    client._signed = True
    assert "TwiceRow" in _page(app, sid, client)
    with app.app_context():  # a change between the two requests is seen on the second
        db.session.execute(text("UPDATE evidence_files SET preview_table = :t WHERE id = :i"),
                           {"t": json.dumps({"rows": [[{"text": "SecondRow", "formula": False}]],
                                             "truncated": False, "formulas": 0}), "i": a})
        db.session.commit()
    html = _page(app, sid, client)
    assert "SecondRow" in html and "TwiceRow" not in html


def test_full_table_of_long_cells(app):
    """A file of 23x23 cells of 250 characters: the 64 KiB head holds only its first rows, cut
    at CSV_CELL_CHARS; then a full 20x20 table of 200-character cells put in the column."""
    owner = setup_people(app)["owner"]
    rows = [",".join(f"R{r:02d}C{c:02d}" + "x" * (CSV_CELL_CHARS + 50) for c in range(CSV_COLUMNS + 3))
            for r in range(CSV_ROWS + 3)]
    sid, (a,) = submit(app, owner, [("big.csv", ("\n".join(rows) + "\n").encode())])
    run_worker(app)
    html = _page(app, sid)
    assert f'data-testid="csv-{a}"' in html and "R00C00" in html and f"R00C{CSV_COLUMNS:02d}" not in html
    assert "x" * (CSV_CELL_CHARS + 1) not in html
    assert "Only the first rows and columns are shown" in html
    full = {"rows": [[{"text": f"R{r:02d}C{c:02d}" + "y" * (CSV_CELL_CHARS - 6), "formula": c == 0}
                      for c in range(CSV_COLUMNS)] for r in range(CSV_ROWS)], "truncated": False,
            "formulas": CSV_ROWS}
    with app.app_context():
        db.session.get(EvidenceFile, a).preview_table = full
        db.session.commit()
    html = _page(app, sid)
    assert all(f"R{r:02d}C{c:02d}" + "y" * (CSV_CELL_CHARS - 6) in html
               for r in range(CSV_ROWS) for c in range(CSV_COLUMNS))
    assert f'data-testid="formulas-{a}"' in html
