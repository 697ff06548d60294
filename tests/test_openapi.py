"""The OpenAPI document is valid 3.1, describes every /api route, and every error example is
the envelope."""
import re

from openapi_spec_validator import validate


def _doc_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_document_is_valid_openapi_31(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_api_route_is_documented(app, client):
    doc = client.get("/api/openapi.json").get_json()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = _doc_path(rule.rule)
        assert path in doc["paths"], f"{rule.rule} is not in the OpenAPI document"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], f"{method} {rule.rule} is not documented"


def test_error_examples_are_envelopes_with_the_ledger_codes(client):
    doc = client.get("/api/openapi.json").get_json()
    codes = set()
    for item in doc["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                for example in response.get("content", {}).get("application/json", {}).get("examples", {}).values():
                    value = example["value"]
                    assert set(value) == {"type", "code", "message", "details"}
                    codes.add(value["code"])
    assert {"cap_reached", "duplicate_event", "unmatched_contact"} <= codes


def test_every_operation_documents_the_database_timeout_answer(client):
    doc = client.get("/api/openapi.json").get_json()
    for path, item in doc["paths"].items():
        if path == "/api/openapi.json":  # a static document: the one route that reads no database
            continue
        for method, operation in item.items():
            examples = operation["responses"].get("503", {}).get("content", {}).get("application/json", {}).get("examples", {})
            assert "database_timeout" in examples, f"{method.upper()} {path}"
            assert "internal" in operation["responses"]["500"]["content"]["application/json"]["examples"], path


# --- the document and the server agree: the limits in the spec are the ones the doors enforce ------

import json  # noqa: E402

import pytest  # noqa: E402
from jsonschema import Draft202012Validator  # noqa: E402

from api.schemas.cron import MAX_DAYS, MAX_LIMIT  # noqa: E402

HOOK = {"id": "e1", "event": "tag_added", "payload": [
    {"type": "contacts", "id": "c-1", "attributes": {"email": "a@example.com"}},
    {"type": "contact_tags", "id": "t-1", "attributes": {"name": "elevate-ai-1-completed"}}]}
FLAT = {"event_id": "f1", "contact": {"id": "c-1"}, "tag": {"name": "t"}}


def _accepts(doc: dict, schema: dict, value) -> bool:
    # The document itself is the root, so "#/components/schemas/..." resolves as in the spec.
    return Draft202012Validator({**doc, **schema}).is_valid(value)


def _param(doc: dict, path: str, name: str) -> dict:
    return next(p["schema"] for p in doc["paths"][path]["get"]["parameters"] if p["name"] == name)


def test_spec_limits_are_the_servers(client):
    doc = client.get("/api/openapi.json").get_json()
    assert _param(doc, "/api/files/{file_id}/signed-url", "ttl")["minimum"] == 1
    days = _param(doc, "/api/cron/enforce-retention", "days")
    assert (days["minimum"], days["maximum"]) == (1, MAX_DAYS)
    assert _param(doc, "/api/cron/enforce-retention", "limit")["maximum"] == MAX_LIMIT
    assert _param(doc, "/api/files/{file_id}", "file_id")["maximum"] == 2**63 - 1
    signed_urls = doc["paths"]["/api/files/signed-urls"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert not _accepts(doc, signed_urls, {"file_ids": [1], "ttl": 0})
    assert _accepts(doc, signed_urls, {"file_ids": [1], "ttl": 1})


def test_webhook_body_schema_requires_the_documented_fields(client):
    doc = client.get("/api/openapi.json").get_json()
    body = doc["paths"]["/api/webhooks/kajabi"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert _accepts(doc, body, HOOK) and _accepts(doc, body, FLAT)
    for bad in ({}, {"id": "e1", "event": "tag_added"}, {**HOOK, "payload": []},
                {"event_id": "f1", "contact": "someone@example.com", "tag": "t"}):
        assert not _accepts(doc, body, bad), bad
    assert set(doc["components"]["schemas"]["KajabiHook"]["required"]) == {"event", "payload"}
    assert set(doc["components"]["schemas"]["KajabiFlat"]["required"]) == {"contact", "tag"}


def _tag_hook(**change):
    body = json.loads(json.dumps(HOOK))
    body["payload"][1]["attributes"].update(change)
    return body


@pytest.mark.parametrize("bad", [
    _tag_hook(name=2024), _tag_hook(name="t" * 201), _tag_hook(name="a\u0001b"),
    {**HOOK, "id": 2**63}, {**HOOK, "event": "e" * 65}, {**FLAT, "contact": {"email": ["x"]}},
    {**FLAT, "contact": {"id": "c" * 65}}, {**HOOK, "created_at": "yesterday"},
])
def test_what_the_spec_refuses_the_server_refuses(make_app, bad):
    app = make_app(KAJABI_WEBHOOK_SECRET="s")
    client = app.test_client()
    doc = client.get("/api/openapi.json").get_json()
    body = doc["paths"]["/api/webhooks/kajabi"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert not _accepts(doc, body, bad)
    response = client.post("/api/webhooks/kajabi?token=s", data=json.dumps(bad), content_type="application/json")
    assert response.status_code == 400 and response.get_json()["code"] in ("invalid_payload", "invalid_json")


def test_the_documents_body_examples_are_accepted_by_the_server(make_app):
    app = make_app(KAJABI_WEBHOOK_SECRET="s")
    client = app.test_client()
    doc = client.get("/api/openapi.json").get_json()
    for name in ("KajabiHook", "KajabiFlat"):
        for example in doc["components"]["schemas"][name]["examples"]:
            response = client.post("/api/webhooks/kajabi?token=s", data=json.dumps(example), content_type="application/json")
            assert response.status_code == 202, (name, response.get_json())
