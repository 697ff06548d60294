"""File names and encodings as people's computers send them, through the portal's real form post
(a multipart body written byte for byte as the browser writes it)."""
from __future__ import annotations

import codecs
import hashlib
import html as html_lib
import re

import pytest

from core.platform.db import db
from core.platform.models import EvidenceFile, Submission
from core.evidence.form_parsing import client_file_name
from tests.evidence_support import CLEAN_PDF, setup_people, sign_in, stored_keys, yesterday

BOUNDARY = "----geckoformboundary5b1f3c"


def post_raw(client, disposition: str, data: bytes, content_type: str = "application/octet-stream"):
    """POST /submissions/new with one file part whose Content-Disposition is exactly `disposition`."""
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"',
                      client.get("/submissions/new").get_data(as_text=True))
    fields = {"csrf_token": (token.group(1) or token.group(2)) if token else "",
              "activity_code": "EXPLORE", "session_date": yesterday().isoformat()}
    body = b""
    for name, value in fields.items():
        body += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").encode()
    body += (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n"
             .encode("utf-8")) + data + f"\r\n--{BOUNDARY}--\r\n".encode()
    return client.post("/submissions/new", data=body, content_type=f"multipart/form-data; boundary={BOUNDARY}")


@pytest.mark.parametrize("disposition, shown", [
    # The field report: an older Windows browser sends the whole path.
    ('form-data; name="files"; filename="C:\\Users\\Example\\Desktop\\scan.pdf"', "scan.pdf"),
    ('form-data; name="files"; filename="\\\\fileserver\\share\\Team A\\report 2024.pdf"', "report 2024.pdf"),
    ('form-data; name="files"; filename="/home/example/Documents/scan.pdf"', "scan.pdf"),
    ('form-data; name="files"; filename="../../etc/scan.pdf"', "scan.pdf"),
    ("form-data; name=\"files\"; filename=\"fallback.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf", "résumé.pdf"),
    ('form-data; name="files"; filename="Zo\u00eb scan.pdf"', "Zoë scan.pdf"),
])
def test_only_the_base_name_survives_the_form_post(app, disposition, shown):
    setup_people(app)
    client = app.test_client()
    sign_in(client, "owner")
    response = post_raw(client, disposition, CLEAN_PDF)
    assert response.status_code == 302, response.get_data(as_text=True)[:400]
    with app.app_context():
        (row,) = db.session.query(EvidenceFile).all()
        assert row.original_name == shown
        sid = row.submission_id
    page = html_lib.unescape(client.get(f"/submissions/{sid}").get_data(as_text=True))
    assert f"{shown} (" in page
    for leaked in ("Users", "Example", "Desktop", "fileserver", "home"):
        assert leaked not in page.split("<h2>Files</h2>")[1].split("</ul>")[0]


def test_a_path_without_a_pdf_ending_is_still_refused_by_its_base_name(app):
    setup_people(app)
    client = app.test_client()
    sign_in(client, "owner")
    response = post_raw(client, 'form-data; name="files"; filename="C:\\Users\\Example\\scan.pdf\\payload.exe"',
                        CLEAN_PDF)
    assert response.status_code == 415
    text = html_lib.unescape(response.get_data(as_text=True))
    assert "Files ending in .exe are not accepted" in text and "Users" not in text
    with app.app_context():
        assert db.session.query(Submission).count() == 0 and db.session.query(EvidenceFile).count() == 0
    assert stored_keys(app) == []


@pytest.mark.parametrize("parsed, raw, expected", [
    ("C:UsersExamplescan.pdf", 'form-data; name="f"; filename="C:\\Users\\Example\\scan.pdf"', "scan.pdf"),
    ("scan.pdf", 'form-data; name="f"; filename="scan.pdf"', "scan.pdf"),
    ("x.pdf", "form-data; name=\"f\"; filename=\"C:\\a\\x.pdf\"; filename*=UTF-8''x.pdf", "x.pdf"),
    ("weird", 'form-data; name="f"; filename="ends-in-a-separator\\"', "weird"),
    (None, None, None),
])
def test_client_file_name(parsed, raw, expected):
    assert client_file_name(parsed, raw) == expected


# -- CSV encodings -----------------------------------------------------------------------------

TABLE = "name,city,peers\nZoë,Kraków,3\nJosé,São Paulo,5\n"


@pytest.mark.parametrize("label, data", [
    ("UTF-8", TABLE.encode("utf-8")),
    ("UTF-8 with BOM", TABLE.encode("utf-8-sig")),
    ("UTF-16 LE with BOM", TABLE.encode("utf-16")),  # what several exporters write
    ("UTF-16 BE with BOM", codecs.BOM_UTF16_BE + TABLE.encode("utf-16-be")),
])
def test_csv_in_utf8_or_utf16_with_a_bom_is_kept_byte_for_byte(app, label, data):
    setup_people(app)
    client = app.test_client()
    sign_in(client, "owner")
    response = post_raw(client, 'form-data; name="files"; filename="attendance.csv"', data, "text/csv")
    assert response.status_code == 302, (label, response.get_data(as_text=True)[:400])
    with app.app_context():
        (row,) = db.session.query(EvidenceFile).all()
        assert (row.ext, row.content_type, row.size_bytes) == ("csv", "text/csv", len(data))
        assert row.sha256 == hashlib.sha256(data).hexdigest()
    storage = app.extensions["points"].storage
    assert b"".join(storage.iter_chunks(row.storage_key)) == data


@pytest.mark.parametrize("label, data, named", [
    ("Windows-1252", TABLE.encode("cp1252"), "an older Windows or Latin-1 encoding"),
    ("UTF-16 without a BOM", TABLE.encode("utf-16-le"), "UTF-16 without a byte-order mark"),
    ("UTF-32", TABLE.encode("utf-32"), "UTF-32"),
])
def test_other_text_is_refused_with_what_to_do(app, label, data, named):
    setup_people(app)
    client = app.test_client()
    sign_in(client, "owner")
    response = post_raw(client, 'form-data; name="files"; filename="attendance.csv"', data, "text/csv")
    assert response.status_code == 415, label
    text = html_lib.unescape(response.get_data(as_text=True))
    assert f"attendance.csv: This CSV file is saved in {named}" in text
    assert 'choose Save As > "CSV UTF-8"' in text
    with app.app_context():
        assert db.session.query(Submission).count() == 0 and db.session.query(EvidenceFile).count() == 0
    assert stored_keys(app) == []
