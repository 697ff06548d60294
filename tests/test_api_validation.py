"""Every /api door refuses what its declared schema does not allow, with a 400 naming the field,
before anything is stored; no input is a 500. Through the real routes on PostgreSQL and Redis:
first each case observed in issue 12, then each kind of bad input across every place it can go."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from core.platform.db import db
from core.platform.models import KajabiEvent, Run, User
from tests.evidence_support import CLEAN_PDF, setup_people, sign_in, submit

SECRET = "kajabi-test-secret"
CRON = "cron-test-secret-0123456789"
METRICS = "metrics-token-0123456789"
HOOK = f"/api/webhooks/kajabi?token={SECRET}"
BIGINT_MAX = 2**63 - 1


@pytest.fixture
def vapp(make_app):
    return make_app(KAJABI_WEBHOOK_SECRET=SECRET, CRON_SECRET=CRON, ENABLE_INTERNAL_ENDPOINTS="1",
                    INTERNAL_METRICS_TOKEN=METRICS)


def documented(tag="Elevate-AI-1-Completed", contact="c-100", email="known@example.com", event_id="evt-1") -> dict:
    return {"id": event_id, "event": "tag_added", "payload": [
        {"type": "contacts", "id": contact, "attributes": {"email": email, "name": "Known Person"}},
        {"type": "contact_tags", "id": "t-1", "attributes": {"name": tag}}]}


def flat(**overrides) -> dict:
    return {"event_id": "flat-1", "contact": {"id": "c-1", "email": "a@example.com"}, "tag": {"name": "t"}, **overrides}


def stored(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(KajabiEvent))


def post_raw(app, raw: bytes, content_type: str = "application/json"):
    return app.test_client().post(HOOK, data=raw, content_type=content_type)


def refused(app, body_or_raw, code: str, field: str | None = None):
    """POST to the webhook; assert a 400 envelope with `code` (naming `field`) and nothing stored."""
    raw = body_or_raw if isinstance(body_or_raw, bytes) else json.dumps(body_or_raw).encode()
    response = post_raw(app, raw)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert set(body) == {"type", "code", "message", "details"} and body["type"] == "validation_error"
    assert body["code"] == code, body
    if field is not None:
        assert field in [d["field"] for d in body["details"]], body
    assert stored(app) == 0
    return body


# --- the cases observed in the issue --------------------------------------------------------------

def test_a_tag_name_that_is_a_number_is_refused_naming_the_field(vapp):
    body = refused(vapp, documented(tag=2024), "invalid_payload", "payload[1].attributes.name")
    assert "payload[1].attributes.name" in body["message"]


def test_a_flat_body_with_a_string_contact_is_refused(vapp):
    refused(vapp, {"event_id": "e1", "contact": "someone@example.com", "tag": "t"}, "invalid_payload", "contact")


def test_a_flat_body_whose_email_is_a_list_is_refused_and_not_stored(vapp):
    refused(vapp, flat(contact={"email": ["someone@example.com"]}), "invalid_payload", "contact.email")


def test_a_tag_name_with_nul_is_refused(vapp):
    refused(vapp, documented(tag="elevate\u0000ai"), "invalid_json", "payload[1].attributes.name")


def test_a_contact_id_longer_than_its_column_is_refused(vapp):
    refused(vapp, documented(contact="c" * 100), "invalid_payload", "payload[0].id")


def test_arrays_nested_ten_thousand_deep_are_refused(vapp):
    raw = b"[" * 10000 + b"]" * 10000
    assert len(raw) == 20000
    body = refused(vapp, raw, "invalid_json", "body")
    assert "nest" in body["message"]


def test_a_job_id_rq_could_not_have_made_is_404(vapp):
    response = vapp.test_client().get("/api/cron/jobs/a.b", headers={"Authorization": f"Bearer {CRON}"})
    assert response.status_code == 404 and response.get_json()["code"] == "job_not_found"


@pytest.mark.parametrize("job_id", ["retention-99999999999999999999", "retention-9223372036854775808",
                                    "retention-\u00b2", "x" * 129])
def test_job_ids_beyond_bigint_or_odd_digits_are_404(vapp, job_id):
    response = vapp.test_client().get(f"/api/cron/jobs/{job_id}", headers={"Authorization": f"Bearer {CRON}"})
    assert response.status_code == 404 and response.get_json()["code"] == "job_not_found"


def test_a_file_id_beyond_bigint_is_404_when_signed_in(vapp):
    setup_people(vapp)
    client = vapp.test_client()
    sign_in(client, "reviewer")
    for path in ("/api/files/9223372036854775808", "/api/files/9223372036854775808/signed-url",
                 "/api/files/9223372036854775808/thumbnail", f"/api/files/{10**30}"):
        response = client.get(path)
        assert response.status_code == 404 and response.get_json()["type"] == "not_found", path
    assert client.get(f"/api/files/{BIGINT_MAX}").get_json()["code"] == "file_not_found"  # the largest id is looked up


def test_a_wrong_cron_bearer_is_401_with_the_rfc_6750_challenge(vapp):
    response = vapp.test_client().get("/api/cron/enforce-retention", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401 and response.get_json()["code"] == "invalid_token"
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


# --- each kind, everywhere it can go ----------------------------------------------------------------

NON_STANDARD = {
    "NaN": b'{"id": "e1", "event": "tag_added", "n": NaN}',
    "Infinity": b'{"id": "e1", "event": "tag_added", "n": Infinity}',
    "-Infinity": b'{"id": "e1", "event": "tag_added", "n": -Infinity}',
    "1e999": b'{"id": "e1", "event": "tag_added", "n": 1e999}',
    "duplicate key": b'{"id": "e1", "id": "e2", "event": "tag_added"}',
    "duplicate nested key": json.dumps(documented()).replace('"name": "Known Person"', '"name": "a", "name": "b"').encode(),
    "lone surrogate": json.dumps(documented(tag="x")).replace('"x"', '"\\ud800"').encode(),
    "control character": json.dumps(documented(tag="x")).replace('"x"', '"a\\u0001b"').encode(),
    "DEL in an extra field": json.dumps({**documented(), "note": "a\x7fb"}).encode(),
    "NUL in a key": json.dumps({**documented(), "a\u0000b": 1}).encode(),
    "trailing garbage": json.dumps(documented()).encode() + b" x",
    "17 levels deep": json.dumps({**documented(), "extra": json.loads("[" * 16 + "]" * 16)}).encode(),
}


@pytest.mark.parametrize("name", NON_STANDARD)
def test_json_outside_the_standard_is_refused(vapp, name):
    refused(vapp, NON_STANDARD[name], "invalid_json")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"])
def test_bodies_not_in_utf8_are_refused(vapp, encoding):
    raw = json.dumps(documented(tag="élevé"), ensure_ascii=False).encode(encoding)
    refused(vapp, raw, "invalid_encoding", "body")


def test_utf8_encoded_surrogates_are_refused(vapp):
    raw = json.dumps(documented(tag="x")).encode().replace(b'"x"', b'"\xed\xa0\x80"')
    refused(vapp, raw, "invalid_encoding")


def test_the_deepest_documented_nesting_still_passes(vapp):
    body = {**documented(), "extra": json.loads("[" * 15 + "]" * 15)}  # 16 levels in all
    assert post_raw(vapp, json.dumps(body).encode()).status_code == 202
    assert stored(vapp) == 1


# Every declared string of both shapes: (body with NUL there, the path the refusal names).
STRING_FIELDS = [
    (lambda v: documented(event_id=v), "id"),
    (lambda v: {**documented(), "event": v}, "event"),
    (lambda v: {**documented(), "created_at": v}, "created_at"),
    (lambda v: documented(contact=v), "payload[0].id"),
    (lambda v: documented(email=v), "payload[0].attributes.email"),
    (lambda v: documented(tag=v), "payload[1].attributes.name"),
    (lambda v: flat(event_id=v), "event_id"),
    (lambda v: flat(contact={"id": v}), "contact.id"),
    (lambda v: flat(contact={"email": v}), "contact.email"),
    (lambda v: flat(tag={"name": v}), "tag.name"),
    (lambda v: flat(tag={"id": v, "name": "t"}), "tag.id"),
]


@pytest.mark.parametrize("build, path", STRING_FIELDS, ids=[p for _, p in STRING_FIELDS])
def test_every_string_field_with_nul_is_refused(vapp, build, path):
    refused(vapp, build("a\u0000b"), "invalid_json", path)


@pytest.mark.parametrize("build, path", STRING_FIELDS, ids=[p for _, p in STRING_FIELDS])
def test_every_string_field_refuses_another_type(vapp, build, path):
    for value in (2024, 1.5, True, ["x"], {"x": 1}):
        if isinstance(value, int) and not isinstance(value, bool) and path.endswith("id"):
            continue  # ids may be numbers
        refused(vapp, build(value), "invalid_payload", path)


# (body with a value of n characters there, the column's length, the path)
LENGTHS = [
    (lambda n: documented(event_id="e" * n), 255, "id"),
    (lambda n: {**documented(), "event": "e" * n}, 64, "event"),
    (lambda n: documented(contact="c" * n), 64, "payload[0].id"),
    (lambda n: documented(email="a" * (n - 12) + "@example.com"), 320, "payload[0].attributes.email"),
    (lambda n: documented(tag="t" * n), 200, "payload[1].attributes.name"),
    (lambda n: flat(contact={"id": "c" * n}), 64, "contact.id"),
    (lambda n: flat(event_id="e" * n), 255, "event_id"),
]


@pytest.mark.parametrize("build, limit, path", LENGTHS, ids=[p for _, _, p in LENGTHS])
def test_string_lengths_match_the_database_columns(vapp, build, limit, path):
    refused(vapp, build(limit + 1), "invalid_payload", path)
    response = post_raw(vapp, json.dumps(build(limit)).encode())  # at the limit: PostgreSQL takes it
    assert response.status_code == 202, response.get_json()
    assert stored(vapp) == 1


def test_a_tag_that_lengthens_when_lower_cased_is_refused(vapp):
    refused(vapp, documented(tag="\u0130" * 200), "invalid_payload", "payload[1].attributes.name")  # 'İ'.lower() is 2 chars


@pytest.mark.parametrize("build, path", [(lambda v: documented(contact=v), "payload[0].id"),
                                         (lambda v: documented(event_id=v), "id"),
                                         (lambda v: flat(contact={"id": v}), "contact.id")])
def test_numeric_ids_stay_within_bigint(vapp, build, path):
    refused(vapp, build(BIGINT_MAX + 1), "invalid_payload", path)
    refused(vapp, build(-1), "invalid_payload", path)
    assert post_raw(vapp, json.dumps(build(BIGINT_MAX)).encode()).status_code == 202


@pytest.mark.parametrize("body, path", [
    ({}, "payload"),
    ([], "body"),
    ("text", "body"),
    ({"id": "e1", "event": "tag_added", "payload": []}, "payload"),
    ({"id": "e1", "event": "tag_added", "payload": [{"type": "contacts", "id": "c"}]}, "payload"),
    ({"id": "e1", "payload": documented()["payload"]}, "event"),
    ({"id": "e1", "event": "tag_added", "payload": [{"type": "contact_tags", "attributes": {"name": "t"}},
                                                    {"type": "contacts", "attributes": {}}]}, "payload"),
    (documented(tag="   "), "payload[1].attributes.name"),
    ({**documented(), "created_at": "yesterday"}, "created_at"),
    ({**documented(), "created_at": "9999-12-31T23:59:59-23:00"}, "created_at"),
    (flat(contact={}), "contact"),
    (flat(tag={"id": "t-1"}), "tag.name"),
])
def test_shapes_that_are_not_documented_are_refused(vapp, body, path):
    refused(vapp, body, "invalid_payload", path)


def test_other_events_and_extra_fields_are_still_stored(vapp):
    body = {"id": "evt-9", "event": "contact_created", "payload": [{"type": "contacts", "id": 42, "extra": [1, 2]},
                                                                   {"type": "offers", "anything": {"x": None}}]}
    assert post_raw(vapp, json.dumps(body).encode()).status_code == 202
    assert post_raw(vapp, json.dumps(documented(contact=123, event_id=77)).encode()).status_code == 202
    with vapp.app_context():
        rows = db.session.scalars(select(KajabiEvent).order_by(KajabiEvent.id)).all()
        assert [(r.event_id, r.contact_id) for r in rows] == [("evt-9", "42"), ("77", "123")]


# --- parameters and the other bodies ------------------------------------------------------------

def _int_rules(app):
    for rule in app.url_map.iter_rules():
        names = [name for name, conv in rule._converters.items() if type(conv).__name__ == "BigintConverter"]
        if names:
            yield rule, names


def test_every_int_path_parameter_beyond_bigint_is_404(vapp):
    setup_people(vapp)
    client = vapp.test_client()
    sign_in(client, "admin")
    rules = list(_int_rules(vapp))
    assert len(rules) >= 10  # files, review, submissions, admin
    for rule, names in rules:
        path = rule.rule
        for name in names:
            path = re.sub(rf"<int:{name}>", str(BIGINT_MAX + 1), path)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(path, method=method)
            assert response.status_code == 404, (method, path, response.status_code)


BEARER_ROUTES = ["/api/cron/enforce-retention", "/api/cron/jobs/retention-1", "/api/slo", "/metrics"]


@pytest.mark.parametrize("path", BEARER_ROUTES)
def test_every_bearer_route_follows_rfc_6750(vapp, path):
    client = vapp.test_client()
    missing = client.get(path)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.get_json()["code"] == "unauthenticated"
    for header in ("Bearer wrong", "bearer wrong", f"Bearer {CRON}{METRICS}"):
        wrong = client.get(path, headers={"Authorization": header})
        assert wrong.status_code == 401 and wrong.get_json()["code"] == "invalid_token"
        assert wrong.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    right = CRON if "cron" in path else METRICS
    assert client.get(path, headers={"Authorization": f"Bearer {right}"}).status_code < 300 or "jobs" in path


@pytest.mark.parametrize("path, status", [("/api/cron/enforce-retention", 503), ("/api/slo", 403), ("/metrics", 403)])
def test_not_configured_answers_are_unchanged(make_app, path, status):
    app = make_app(ENABLE_INTERNAL_ENDPOINTS="1")
    response = app.test_client().get(path, headers={"Authorization": "Bearer anything"})
    assert response.status_code == status and response.get_json()["code"] == "not_configured"
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize("query, fields", [
    ("days=36501", ["days"]), ("days=0", ["days"]), ("days=", ["days"]), ("limit=1001&offset=1000000001", ["limit", "offset"]),
    ("days=1e3", ["days"]), ("days=%EF%BC%91", ["days"]), ("days=" + "9" * 40, ["days"]), ("days=-1", ["days"]),
])
def test_cron_parameters_are_refused_by_their_declared_ranges(vapp, query, fields):
    response = vapp.test_client().get(f"/api/cron/enforce-retention?{query}", headers={"Authorization": f"Bearer {CRON}"})
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_parameter"
    assert [d["field"] for d in response.get_json()["details"]] == fields
    with vapp.app_context():
        assert db.session.scalar(select(func.count()).select_from(Run)) == 0  # nothing queued


@pytest.fixture
def reviewer(vapp):
    setup_people(vapp)
    client = vapp.test_client()
    sign_in(client, "reviewer")
    return client


@pytest.fixture
def signed_in(vapp, reviewer):
    with vapp.app_context():
        owner = db.session.scalar(select(User.id).where(User.email == "owner@example.com"))
    _, [file_id] = submit(vapp, owner, [("a.pdf", CLEAN_PDF)])
    return reviewer, file_id


@pytest.mark.parametrize("body, field", [
    ({"file_ids": [BIGINT_MAX + 1]}, "file_ids[0]"),
    ({"file_ids": [1, 0]}, "file_ids[1]"),
    ({"file_ids": [1, True]}, "file_ids[1]"),
    ({"file_ids": [1.0]}, "file_ids[0]"),
    ({"file_ids": [1], "ttl": 0}, "ttl"),
    ({"file_ids": [1], "ttl": "60"}, "ttl"),
    ({"file_ids": [1], "ttl": BIGINT_MAX}, "ttl"),
    ({"file_ids": [1], "extra": 1}, "extra"),
    ({"file_ids": "1"}, "file_ids"),
])
def test_signed_urls_body_is_refused_naming_the_field(reviewer, body, field):
    client = reviewer
    response = client.post("/api/files/signed-urls", json=body)
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_parameter"
    assert field in [d["field"] for d in response.get_json()["details"]]


@pytest.mark.parametrize("raw, code", [(b'{"file_ids": [1], "ttl": NaN}', "invalid_json"),
                                       (b'{"file_ids": [1], "file_ids": [2]}', "invalid_json"),
                                       (b"[" * 5000, "invalid_json"),
                                       ('{"file_ids": [1]}'.encode("utf-16"), "invalid_encoding")])
def test_signed_urls_body_is_read_strictly(reviewer, raw, code):
    client = reviewer
    response = client.post("/api/files/signed-urls", data=raw, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["code"] == code


@pytest.mark.parametrize("ttl", ["0", "-1", "1.5", "", "\u00b2", "9" * 30, "1000000001"])
def test_signed_url_ttl_is_refused_outside_its_range(signed_in, ttl):
    client, file_id = signed_in
    response = client.get(f"/api/files/{file_id}/signed-url", query_string={"ttl": ttl})
    assert response.status_code == 400 and response.get_json()["details"][0]["field"] == "ttl"


def test_signed_urls_body_is_bounded(reviewer):
    client = reviewer
    raw = json.dumps({"file_ids": [1], "pad": " " * 20000}).encode()
    response = client.post("/api/files/signed-urls", data=raw, content_type="application/json")
    assert response.status_code == 413 and response.get_json()["code"] == "payload_too_large"


def test_brackets_inside_strings_do_not_count_as_nesting(vapp):
    body = documented(tag="[{" * 40 + '\\"[')  # an escaped quote does not end the string early
    assert post_raw(vapp, json.dumps(body).encode()).status_code == 202
    assert stored(vapp) == 1
