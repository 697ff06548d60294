"""Property: whatever bytes or JSON value reaches the Kajabi webhook, the answer is never a 5xx,
and a row is stored only when the body is one of the documented shapes (checked against the
pydantic models the door itself declares). On PostgreSQL, through the real route."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from sqlalchemy import func, select

from api.json_body import read_json
from api.schemas.kajabi import parse_body
from core.platform.db import db
from core.platform.errors import ValidationError
from core.platform.models import KajabiEvent

SECRET = "kajabi-test-secret"
PROPERTY = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

leaves = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
          | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=80))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                      max_leaves=20)
# Near the documented shapes, so the search also lands inside them and on their edges: mostly
# plausible values, sometimes an odd one.
odd = leaves | st.sampled_from(["x" * 65, "t" * 201, "\u0130" * 200, " ", "2024-02-30T10:00:00Z", 2**63, -1])


def mostly(good):
    """`good` nine times in ten, an odd value otherwise."""
    return st.integers(0, 9).flatmap(lambda n: odd if n == 0 else good)


word = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
ident = mostly(word | st.integers(0, 2**63 - 1))
email = mostly(st.emails().filter(lambda e: len(e) <= 320))
when = mostly(st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01t10:00:00.5+02:00"]))
kind = mostly(st.sampled_from(["tag_added", "tag_removed", "contact_created"]))
contact_item = st.fixed_dictionaries({"type": st.just("contacts"), "id": ident,
                                      "attributes": mostly(st.fixed_dictionaries({}, optional={"email": email, "name": word}))})
tag_item = st.fixed_dictionaries({"type": st.just("contact_tags"), "id": ident,
                                  "attributes": mostly(st.fixed_dictionaries({"name": mostly(word)}))})
other_item = st.fixed_dictionaries({"type": mostly(word)}, optional={"data": values})
hooks = st.fixed_dictionaries(
    {"event": kind, "payload": st.tuples(contact_item, tag_item, st.lists(other_item | contact_item, max_size=2))
     .flatmap(lambda t: st.permutations([t[0], t[1], *t[2]]))},
    optional={"id": ident, "created_at": when, "extra": values})
flats = st.fixed_dictionaries({"contact": mostly(st.fixed_dictionaries({}, optional={"id": ident, "email": email})),
                               "tag": mostly(st.fixed_dictionaries({"name": mostly(word)}, optional={"id": ident}))},
                              optional={"event_id": ident, "event": kind, "created_at": when})


@pytest.fixture
def hook(make_app):
    app = make_app(KAJABI_WEBHOOK_SECRET=SECRET)
    client = app.test_client()

    def post(raw: bytes):
        with app.app_context():
            before = db.session.scalar(select(func.count()).select_from(KajabiEvent))
        response = client.post(f"/api/webhooks/kajabi?token={SECRET}", data=raw, content_type="application/json")
        with app.app_context():
            after = db.session.scalar(select(func.count()).select_from(KajabiEvent))
            db.session.remove()
        return response, after - before

    return post


def _documented(raw: bytes) -> bool:
    try:
        parse_body(read_json(raw), raw)
        return True
    except ValidationError:
        return False


def _check(post, raw: bytes) -> None:
    response, added = post(raw)
    event(f"{response.status_code} {(response.get_json() or {}).get('code', '')}")  # --hypothesis-show-statistics
    assert response.status_code < 500, (raw[:200], response.get_data(as_text=True)[:300])
    assert response.status_code in (200, 202, 400), response.status_code
    if response.status_code == 400:
        assert added == 0 and set(response.get_json()) == {"type", "code", "message", "details"}
    elif added:
        assert response.status_code == 202 and _documented(raw)


@PROPERTY
@given(body=st.one_of(hooks, flats, values))
def test_any_json_value_is_never_a_5xx_and_stored_only_when_documented(hook, body):
    _check(hook, json.dumps(body).encode())


@PROPERTY
@given(raw=st.binary(max_size=300) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_bytes_are_never_a_5xx_and_stored_only_when_documented(hook, raw):
    _check(hook, raw)


# Strings drawn from every code point, the refused ones included (controls, surrogates, bidi
# controls, noncharacters), as the walk in api/json_body.py sees them.
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
any_values = st.recursive(st.none() | st.integers(-(2**63), 2**63) | any_text,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
                          max_leaves=12)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(value=any_values, ascii_only=st.booleans())
def test_read_json_refuses_a_bad_string_exactly_when_the_walk_finds_one(value, ascii_only):
    """read_json skips the walk over every string when the text has no escape and no refused
    character; whether escaped (\\u2066) or written as is, the verdict is the walk's own."""
    from api.json_body import _bad_string

    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    expected = _bad_string(value)
    try:
        read_json(raw)
        refused = None
    except ValidationError as exc:
        refused = exc
    if expected is None:
        assert refused is None, (raw, refused.details)
    else:  # a lone surrogate written as is is not UTF-8 at all: refused before any walk
        assert refused is not None and refused.code in ("invalid_json", "invalid_encoding"), (raw, expected)
