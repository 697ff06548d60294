"""Odd CSVs through the in-request scan and table (core/evidence/inline_preview.py), from the
third session's outside review: each is settled in the request (a table made or a reason why
not), or refused with the typed fields kept, and nothing is half-written."""
from __future__ import annotations

import io

import pytest

from core.platform.db import db
from core.platform.models import EvidenceFile, Submission
from tests.evidence_support import setup_people, sign_in, stored_keys, yesterday
from tests.test_inline_scan import inline_app, media_queued  # noqa: F401

CSVS = {
    "nul bytes": b"a,b\n1,\x002\n3,4\n",
    "bom": b"\xef\xbb\xbfname,points\nGrace,3\n",
    "utf16 bom": "name,points\nGrace,3\n".encode("utf-16"),
    "invalid utf8": b"name,points\n\xff\xfe\xc3,3\n",
    "formula": b"=HYPERLINK(\"http://x\"),@SUM(1)\n+1,-2\n",
    "header only": b"name,points\n",
    "only newline": b"\n",
    "huge line": b"a," + b"x" * 200_000 + b"\n1,2\n",
    "huge quoted field": b'"' + b"x" * 200_000 + b'"\n',
    "cr only": b"a,b\r1,2\r",
    "many columns": b",".join(b"c%d" % i for i in range(5000)) + b"\n",
    "unclosed quote": b'a,"b\n1,2\n',
}


@pytest.mark.parametrize("name", list(CSVS))
def test_an_odd_csv_is_settled_in_the_request_without_a_500(inline_app, name):
    setup_people(inline_app)
    client = inline_app.test_client()
    sign_in(client, "owner")
    response = client.post("/submissions/new", data={
        "activity_code": "EXPLORE", "session_date": yesterday().isoformat(), "city": "Leeds",
        "files": (io.BytesIO(CSVS[name]), "odd.csv", "text/csv")}, content_type="multipart/form-data")
    assert response.status_code in (302, 400, 415), (name, response.status_code)
    with inline_app.app_context():
        files = db.session.query(EvidenceFile).all()
        keys = set(stored_keys(inline_app))
        if response.status_code in (400, 415):
            assert not files and db.session.query(Submission).count() == 0 and keys == set()
            assert "Leeds" in response.get_data(as_text=True)  # typed fields kept
        else:
            [f] = files
            assert f.scan_state == "clean" and f.preview_state in ("made", "failed"), (f.scan_state, f.preview_state)
            assert f.storage_key in keys  # no row without its object
    if response.status_code == 302:
        reviewer = inline_app.test_client()
        sign_in(reviewer, "reviewer")
        sid = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
        assert reviewer.get(f"/review/{sid}").status_code == 200
