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
