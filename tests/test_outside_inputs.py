"""Kinds of input an outside test sent that still reached a rule or the database (findings of the
review before issues 12-17 were resolved): control characters in portal forms and query strings,
a text part where a file belongs, non-ASCII digits in path ids, a non-JSON body on the
cookie-authorised signed-urls route, bidi controls and noncharacters in webhook strings, and a
number longer than Python will print. Each is refused at the door with nothing stored."""
from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import func, select

from core.platform.db import db
from core.platform.models import Submission
from tests.evidence_support import CLEAN_PDF, sign_in, yesterday
from tests.test_api_validation import documented, flat, refused, reviewer, signed_in, vapp  # noqa: F401  (fixtures)
from tests.test_portal_support import csrf_token, people  # noqa: F401


def submissions(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Submission))


@pytest.mark.parametrize("bad", ["a\x00b@example.com", "a\x07b@example.com", "a\x85b@example.com"])
def test_control_characters_in_the_sign_in_form_are_a_400_not_a_500(make_app, bad):
    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True})
    client = app.test_client()
    token = csrf_token(client, "/login")
    response = client.post("/login", data={"email": bad, "password": "whatever-it-is", "csrf_token": token},
                           headers={"Accept": "text/html"})
    assert response.status_code == 400
    assert "control characters" in response.get_data(as_text=True)


def test_control_characters_in_query_strings_and_upload_fields_are_refused_and_nothing_is_stored(app):
    people(app)
    reviewer_client = app.test_client()
    sign_in(reviewer_client, "reviewer")
    for query in ({"activity": "\x00"}, {"uploader": "x\x00"}):
        assert reviewer_client.get("/review", query_string=query).status_code == 400
    owner = app.test_client()
    sign_in(owner, "owner")
    response = owner.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "EXPLORE", "session_date": yesterday().isoformat(), "note": "ok\x00then",
        "files": [(io.BytesIO(CLEAN_PDF), "a.pdf")]})
    assert response.status_code == 400 and submissions(app) == 0
    assert "note" in response.get_data(as_text=True) or "control characters" in response.get_data(as_text=True)


def test_a_text_part_named_files_is_no_file_and_no_500(app):
    people(app)
    owner = app.test_client()
    sign_in(owner, "owner")
    response = owner.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "EXPLORE", "session_date": yesterday().isoformat(), "files": "abc"})
    assert response.status_code == 400 and submissions(app) == 0


@pytest.mark.parametrize("path_id", ["%D9%A1", "%EF%BC%91", "%E0%A5%A7"])
def test_non_ascii_digits_in_a_path_id_match_no_route(signed_in, path_id):
    client, file_id = signed_in
    assert file_id == 1
    response = client.get(f"/api/files/{path_id}")
    assert response.status_code == 404 and response.get_json()["type"] == "not_found"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_signed_urls_takes_only_json(signed_in, content_type):
    client, file_id = signed_in
    kwargs = {"content_type": content_type} if content_type else {}
    response = client.post("/api/files/signed-urls", data=json.dumps({"file_ids": [file_id]}), **kwargs)
    assert response.status_code == 415 and response.get_json()["code"] == "unsupported_media_type"


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u2028", "\u0085", "\ufffe", "\uffff", "\ufdd0"])
def test_bidi_controls_separators_and_noncharacters_in_a_hook_are_refused(vapp, char):
    refused(vapp, documented(tag=f"elevate{char}-ai"), "invalid_json")


def test_a_five_thousand_digit_number_is_refused_without_python_s_own_message(vapp):
    body = refused(vapp, ('{"event_id": ' + "9" * 5000 + ', "contact": {"id": "c"}, "tag": {"name": "t"}}').encode(),
                   "invalid_json")
    assert "sys." not in json.dumps(body) and "digits" in json.dumps(body)


def test_amplify_with_every_count_left_empty_is_refused_at_the_field(app):
    # Found by an outside test: both counters empty was accepted and later earned +0.
    people(app)
    owner = app.test_client()
    sign_in(owner, "owner")
    response = owner.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "AMPLIFY", "session_date": yesterday().isoformat(), "city": "Leeds", "counter_peers": "",
        "counter_students": "0", "files": [(io.BytesIO(CLEAN_PDF), "attendance.pdf")]})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and submissions(app) == 0
    assert 'id="counter_peers-error">Give at least one count above 0' in html
