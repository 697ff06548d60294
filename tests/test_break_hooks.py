"""Outside tester: hostile Kajabi hook bodies; never a 500, and what is stored is JSON PostgreSQL
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


@pytest.mark.parametrize("ctype", ["text/plain", "", "application/json; charset=utf-16", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "application/json; charset=latin-1"])
def test_content_types(kapp, ctype):
    body = json.dumps(documented("evt-ct")).encode()
    response = kapp.test_client().post(f"{URL}?token={SECRET}", data=body, headers={"Content-Type": ctype} if ctype else {})
    assert response.status_code in (202, 400, 415), (ctype, response.status_code, response.get_data()[:300])


def test_utf16_body_with_json_content_type(kapp):
    body = json.dumps(documented("evt-16")).encode("utf-16")
    response = kapp.test_client().post(f"{URL}?token={SECRET}", data=body, content_type="application/json")
    assert response.status_code == 400, response.status_code


def test_a_stored_payload_with_an_underflowing_number_blocks_a_jsonb_read_of_the_table(kapp):
    """The hook stores the body's own bytes in the `json` column (commit 3f98cac). Python reads
    1e-99999999 as 0.0 and the door accepts it; PostgreSQL's json keeps the text, but jsonb (any
    payload::jsonb query, or a later ALTER COLUMN payload TYPE jsonb) fails on the whole table:
    'value overflows numeric format'. Before, the re-serialised payload held 0.0."""
    raw = (BASE + ', "x": 1e-99999999}').encode()
    assert kapp.test_client().post(f"{URL}?token={SECRET}", data=raw, content_type="application/json").status_code == 202
    burst(kapp)
    [event] = events(kapp)
    assert event.state == "ledgered", event.state
    with kapp.app_context():
        db.session.execute(text("SELECT count(*) FROM kajabi_events WHERE payload::jsonb ? 'id'")).all()
