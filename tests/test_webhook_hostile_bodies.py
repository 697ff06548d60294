"""Hostile Kajabi hook bodies (the third session's outside review); never a 500, and what is stored is JSON PostgreSQL
can read as jsonb too, equal to what the rules saw."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from core.platform.db import db
from tests.test_kajabi import SECRET, URL, burst, documented, events, kapp  # noqa: F401

BASE = json.dumps(documented("evt-h"))[:-1]  # without the closing brace
BODIES = {
    "nul escape in extra value": BASE + ', "x": "\\u0000"}',
    "nul escape in extra key": BASE + ', "\\u0000": 1}',
    "lone surrogate": BASE + ', "x": "\\ud800"}',
    "valid pair": BASE + ', "x": "\\ud83d\\ude00"}',
    "tiny exponent": BASE + ', "x": 1e-99999999}',
    "big exponent float": BASE + ', "x": 1e308}',
    "long fraction": BASE + ', "x": 0.' + "1" * 5000 + "}",
    "negative zero": BASE + ', "x": -0}',
    "deep": BASE + ', "x": ' + "[" * 60 + "]" * 60 + "}",
    "duplicate key": BASE + ', "id": "evt-h2"}',
    "escaped duplicate key": BASE + ', "\\u0069d": "evt-h3"}',
    "bom": "\ufeff" + BASE + "}",
    "trailing garbage": BASE + "} x",
    "escaped slash": BASE + ', "x": "\\/"}',
    "nbsp whitespace": BASE + ",\u00a0\"x\": 1}",
}


@pytest.mark.parametrize("name", list(BODIES))
def test_hostile_body_never_500_and_stored_payload_is_valid_jsonb(kapp, name):
    raw = BODIES[name].encode("utf-8", "surrogatepass")
    response = kapp.test_client().post(f"{URL}?token={SECRET}", data=raw, content_type="application/json")
    assert response.status_code in (200, 202, 400, 413, 415), (name, response.status_code, response.get_data()[:300])
    if response.status_code == 202:
        with kapp.app_context():
            db.session.execute(text("SELECT payload::jsonb FROM kajabi_events")).all()  # readable as jsonb


@pytest.mark.parametrize("ctype", ["text/plain", "", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                   "text/json", "application/jsonx", "application/+json"])
def test_a_body_not_sent_as_json_is_415_and_nothing_stored(kapp, ctype):
    """The hook took any Content-Type: a form or text/plain body that happened to parse was stored.
    Only application/json (or a +json type) is taken; the rest gets the envelope's 415."""
    body = json.dumps(documented("evt-ct")).encode()
    response = kapp.test_client().post(f"{URL}?token={SECRET}", data=body, headers={"Content-Type": ctype} if ctype else {})
    assert response.status_code == 415, (ctype, response.status_code, response.get_data()[:300])
    assert response.get_json()["code"] == "unsupported_media_type"
    assert response.get_json()["details"] == [{"field": "Content-Type", "issue": f"got {ctype.split(';')[0] or 'none'}"}]
    assert events(kapp) == []


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8", "Application/JSON",
                                   "application/json; charset=latin-1", "application/vnd.kajabi+json"])
def test_json_media_types_are_taken_whatever_the_parameters(kapp, ctype):
    """JSON is UTF-8 whatever charset a sender names (RFC 8259 section 8.1); the bytes decide."""
    body = json.dumps(documented("evt-ok")).encode()
    response = kapp.test_client().post(f"{URL}?token={SECRET}", data=body, headers={"Content-Type": ctype})
    assert response.status_code == 202, (ctype, response.status_code, response.get_data()[:300])


def test_a_wrong_secret_is_403_before_the_media_type(kapp):
    response = kapp.test_client().post(f"{URL}?token=wrong", data=b"a=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 403


def test_utf16_body_with_json_content_type(kapp):
    body = json.dumps(documented("evt-16")).encode("utf-16")
    response = kapp.test_client().post(f"{URL}?token={SECRET}", data=body, content_type="application/json")
    assert response.status_code == 400, response.status_code


@pytest.mark.parametrize("number", ["1e-99999999", "0e-99999999", "1e-400", "-2.5e-330", "1e99999", "0.0e-5000"])
def test_a_number_no_double_or_numeric_can_hold_is_refused_and_nothing_stored(kapp, number):
    """The hook stores the body's own bytes in the `json` column. Python read 1e-99999999 as 0.0
    and the door took it; PostgreSQL's json kept the text, and any payload::jsonb (a query, a later
    ALTER COLUMN payload TYPE jsonb) failed on the whole table: 'value overflows numeric format'.
    Such numbers are refused at the door with the error envelope, and nothing is stored."""
    raw = (BASE + f', "x": {number}}}').encode()
    response = kapp.test_client().post(f"{URL}?token={SECRET}", data=raw, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_json", response.get_json()
    assert "number" in response.get_json()["details"][0]["issue"]
    assert events(kapp) == []
    ok = (BASE + ', "x": 1e-300, "y": 1e308, "z": 0e5}').encode()  # what a double holds stays accepted
    assert kapp.test_client().post(f"{URL}?token={SECRET}", data=ok, content_type="application/json").status_code == 202
    with kapp.app_context():
        assert db.session.execute(text("SELECT count(*) FROM kajabi_events WHERE payload::jsonb ? 'id'")).scalar() == 1
