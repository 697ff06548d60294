"""A refused form keeps the work: every typed value stays, each error sits next to its field, the
bad file is named with its reason, and the page says exactly which good files to choose again."""
from __future__ import annotations

import html as html_lib
import io
import re

from core.platform.db import db
from core.platform.models import Submission
from tests.evidence_support import CLEAN_PDF, yesterday
from tests.test_portal_support import people, png, sign_in


def _rechoose(html: str) -> str:
    match = re.search(r'data-testid="rechoose">(.*?)</p>', html, re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", "", match.group(1))) if match else ""


def test_a_bad_file_among_good_ones_names_it_and_lists_the_good_ones_to_choose_again(app):
    people(app)
    client = app.test_client()
    sign_in(client, "owner")
    response = client.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "AMPLIFY", "session_date": yesterday().isoformat(), "city": "Leeds",
        "counter_peers": "4", "counter_students": "21", "note": "Library workshop",
        "files": [(io.BytesIO(png()), "photo.png"), (io.BytesIO(b"MZ\x90\x00" * 100), "tool.exe"),
                  (io.BytesIO(CLEAN_PDF), "list.pdf")]})
    html = response.get_data(as_text=True)
    assert response.status_code == 415  # the one bad file's own status
    error = re.search(r'id="files-error">(.*?)</p>', html, re.S).group(1)
    assert "tool.exe" in error and "photo.png" not in error
    assert _rechoose(html) == ("Choose these files again, they were fine: photo.png, list.pdf. "
                               "A browser cannot keep chosen files after a form is refused.")
    for kept in ('value="Leeds"', 'value="4"', 'value="21"', "Library workshop"):
        assert kept in html
    with app.app_context():
        assert db.session.query(Submission).count() == 0


def test_a_field_error_alone_still_says_which_files_to_choose_again(app):
    people(app)
    client = app.test_client()
    sign_in(client, "owner")
    response = client.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "EXPLORE", "session_date": "", "files": [(io.BytesIO(png()), "photo.png")]})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert re.search(r'id="session_date-error">Give the date of the session.</p>', html)
    assert _rechoose(html).startswith("Choose this file again, it was fine: photo.png.")
