"""CSRF: with protection on (as in production), a POST without a token is refused on every form
of the portal blueprint, sign-in and sign-out included, and changes nothing; every POST form the
portal renders carries a token."""
from __future__ import annotations

import re

import pytest

from core.platform.db import db
from core.platform.models import AuditEvent, Submission
from tests.test_portal_support import PASSWORD, csrf_token, insert, people

SAMPLE_ARGS = {"submission_id": None, "user_id": None, "event_id": 1, "code": "EXPLORE", "file_id": 1}


@pytest.fixture
def csrf_app(make_app):
    # Not `{}`: conftest treats an empty mapping as "use the test default" (CSRF off).
    return make_app(flask_overrides={"WTF_CSRF_ENABLED": True})


def _sign_in(client, email: str) -> None:
    token = csrf_token(client, "/login")
    response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302


def _portal_posts(app, values: dict) -> list[str]:
    adapter = app.url_map.bind("localhost")
    paths = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("portal.") and "POST" in rule.methods:
            paths.append(adapter.build(rule.endpoint, {k: values[k] for k in rule.arguments}))
    return sorted(set(paths))


def test_every_portal_post_without_a_token_is_refused(csrf_app):
    ids = people(csrf_app)
    [sid] = insert(csrf_app, ids["owner"])
    values = {**SAMPLE_ARGS, "submission_id": sid, "user_id": ids["other"]}
    admin = csrf_app.test_client()
    _sign_in(admin, "admin@example.com")
    paths = _portal_posts(csrf_app, values)
    assert "/logout" in paths and "/login" in paths and f"/review/{sid}/decide" in paths
    with csrf_app.app_context():
        audit_before = db.session.query(AuditEvent).count()
    for path in paths:
        response = admin.post(path, data={"reason": "x", "approve": "Approve", "role": "admin", "active": "y"},
                              headers={"Accept": "text/html"})
        assert response.status_code == 400, path
        assert "The form expired or was not sent from this site" in response.get_data(as_text=True), path
    with csrf_app.app_context():
        assert db.session.get(Submission, sid).status == "in_review"
        assert db.session.query(AuditEvent).count() == audit_before
    # Still signed in: sign-out without a token did nothing; with one it works.
    assert admin.get("/admin").status_code == 200
    token = csrf_token(admin, "/admin")
    assert admin.post("/logout", data={"csrf_token": token}).status_code == 302
    assert admin.get("/admin").status_code == 302


def test_a_wrong_token_is_refused_and_a_right_one_accepted(csrf_app):
    ids = people(csrf_app)
    [sid] = insert(csrf_app, ids["owner"])
    reviewer = csrf_app.test_client()
    _sign_in(reviewer, "reviewer@example.com")
    assert reviewer.post(f"/review/{sid}/claim", data={"csrf_token": "forged"}).status_code == 400
    token = csrf_token(reviewer, f"/review/{sid}")
    assert reviewer.post(f"/review/{sid}/claim", data={"csrf_token": token}).status_code == 302
    with csrf_app.app_context():
        assert db.session.get(Submission, sid).claimed_by_id == ids["reviewer"]


def test_every_rendered_post_form_carries_a_token(csrf_app):
    ids = people(csrf_app)
    [sid] = insert(csrf_app, ids["owner"], status="changes_requested")
    [sid2] = insert(csrf_app, ids["owner"], status="approved")
    [sid3] = insert(csrf_app, ids["owner"])
    pages = {"owner@example.com": ["/submissions", "/submissions/new", f"/submissions/{sid}"],
             "admin@example.com": ["/review", f"/review/{sid2}", f"/review/{sid3}", "/admin", "/admin/users",
                                   "/admin/catalogue", "/admin/kajabi", "/admin/outbox", "/admin/retention"]}
    checked = 0
    for email, paths in pages.items():
        client = csrf_app.test_client()
        _sign_in(client, email)
        for path in paths:
            html = client.get(path).get_data(as_text=True)
            for form in re.findall(r"<form[^>]*method=\"post\".*?</form>", html, re.S | re.I):
                assert 'name="csrf_token"' in form, f"{path}: {form[:200]}"
                checked += 1
    assert checked >= 15
