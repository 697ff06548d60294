"""Every /api error and every JSON-accepting 4xx/5xx is the envelope, with a request id."""
import json
import logging

import pytest

ENVELOPE_KEYS = {"type", "code", "message", "details"}


def assert_envelope(response, status, type_, code):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == ENVELOPE_KEYS
    assert (body["type"], body["code"]) == (type_, code)
    assert isinstance(body["details"], list) and body["message"]
    assert response.headers["X-Request-ID"]
    return body


def test_unknown_api_route_is_a_404_envelope(client):
    assert_envelope(client.get("/api/nope"), 404, "not_found", "not_found")


def test_json_client_gets_envelope_outside_api(client):
    response = client.get("/definitely-missing", headers={"Accept": "application/json"})
    assert_envelope(response, 404, "not_found", "not_found")


def test_browser_gets_html_404(client):
    response = client.get("/definitely-missing", headers={"Accept": "text/html"})
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert b"Not found" in response.data


def test_wrong_method_is_a_405_envelope(client):
    response = client.delete("/healthz", headers={"Accept": "application/json"})
    assert_envelope(response, 405, "validation_error", "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_oversized_body_is_a_413_envelope(make_app):
    app = make_app(MAX_UPLOAD_MB="1")

    @app.post("/api/_echo")
    def echo():
        from flask import request
        return {"size": len(request.get_data())}

    limit = app.config["MAX_CONTENT_LENGTH"]
    response = app.test_client().post("/api/_echo", data=b"x" * (limit + 1),
                                      headers={"Accept": "application/json", "Content-Type": "application/json"})
    assert_envelope(response, 413, "validation_error", "payload_too_large")


def test_unexpected_exception_is_logged_with_request_id_and_hidden(app, caplog):
    @app.get("/api/_boom")
    def boom():
        raise RuntimeError("secret database password in the message")

    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/api/_boom", headers={"X-Request-ID": "req-123"})
    body = assert_envelope(response, 500, "internal", "internal_error")
    assert "secret" not in json.dumps(body)
    assert "req-123" in body["message"] and response.headers["X-Request-ID"] == "req-123"
    record = next(r for r in caplog.records if r.getMessage() == "unhandled exception")
    assert record.request_id == "req-123" and record.exc_info


@pytest.mark.parametrize("incoming", ["", "has spaces", "x" * 65, "<script>"])
def test_unsafe_incoming_request_ids_are_replaced(client, incoming):
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] != incoming
    assert len(response.headers["X-Request-ID"]) == 32
