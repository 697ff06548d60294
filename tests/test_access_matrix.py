"""Every route, for anonymous, the uploader, another uploader, a reviewer and an admin, answers as
the matrix says. A rule in app.url_map without an entry fails the test, so a route added later
must be given one (and so be thought about).

POSTs carry no form data, so each one stops at validation (or does something harmless) and the
answer shows who was let in: 302 to /login for anonymous on portal pages, 401 on /api, 403 for a
wrong role, 404 where existence itself is private."""
from __future__ import annotations

from urllib.parse import urlparse

import pytest

from core.platform.db import db
from core.platform.models import KajabiEvent
from tests.test_portal_support import in_review, people, sign_in

ROLES = ("anonymous", "other", "owner", "reviewer", "admin")  # "other" is another uploader


def row(anonymous, owner, other, reviewer, admin):
    return {"anonymous": anonymous, "owner": owner, "other": other, "reviewer": reviewer, "admin": admin}


EVERYONE_200 = row(200, 200, 200, 200, 200)
NOBODY_404 = row(404, 404, 404, 404, 404)
SIGNED_IN = row(302, 200, 200, 200, 200)  # 302: to the sign-in page
REVIEWERS = row(302, 403, 403, 200, 200)
REVIEWERS_POST = row(302, 403, 403, 302, 302)  # the reviewer's 302 is the PRG redirect after the POST
ADMINS = row(302, 403, 403, 403, 200)
ADMINS_POST = row(302, 403, 403, 403, 302)
ADMINS_POST_FORM = row(302, 403, 403, 403, 400)  # re-renders the form with its messages
FILE_READERS = row(401, 200, 404, 200, 200)  # the uploader of that file, reviewers, admins
API_SIGNED_IN_POST = row(401, 415, 415, 415, 415)  # signed in, no JSON body: wrong media type
NOT_CONFIGURED = row(503, 503, 503, 503, 503)


def matrix(s: dict) -> dict[tuple[str, str], tuple[str, dict]]:
    """(rule, method) -> (concrete path, expected status per role). `s` holds sample ids."""
    sid, fid, uid, eid = s["submission"], s["file"], s["user"], s["event"]
    return {
        ("/static/<path:filename>", "GET"): ("/static/app.css", EVERYONE_200),
        ("/healthz", "GET"): ("/healthz", EVERYONE_200),
        ("/readyz", "GET"): ("/readyz", EVERYONE_200),
        ("/metrics", "GET"): ("/metrics", NOBODY_404),  # internal endpoints are off by default
        ("/api/slo", "GET"): ("/api/slo", NOBODY_404),
        ("/api/openapi.json", "GET"): ("/api/openapi.json", EVERYONE_200),
        ("/api/stats", "GET"): ("/api/stats", EVERYONE_200),
        ("/api/storage/local", "GET"): ("/api/storage/local?key=x&expires=1&sig=bad", row(403, 403, 403, 403, 403)),
        ("/api/webhooks/kajabi", "POST"): ("/api/webhooks/kajabi", NOT_CONFIGURED),  # no KAJABI_WEBHOOK_SECRET
        ("/api/cron/enforce-retention", "GET"): ("/api/cron/enforce-retention", NOT_CONFIGURED),
        ("/api/cron/jobs/<job_id>", "GET"): ("/api/cron/jobs/abc", NOT_CONFIGURED),
        ("/api/files/<int:file_id>", "GET"): (f"/api/files/{fid}", FILE_READERS),
        ("/api/files/<int:file_id>/signed-url", "GET"): (f"/api/files/{fid}/signed-url", FILE_READERS),
        ("/api/files/<int:file_id>/thumbnail", "GET"): (f"/api/files/{fid}/thumbnail", FILE_READERS),
        ("/api/files/<int:file_id>/preview/<int:page>", "GET"): (f"/api/files/{fid}/preview/1", FILE_READERS),
        ("/api/files/signed-urls", "POST"): ("/api/files/signed-urls", API_SIGNED_IN_POST),
        # portal: sign-in
        ("/login", "GET"): ("/login", row(200, 302, 302, 302, 302)),
        ("/login", "POST"): ("/login", row(200, 302, 302, 302, 302)),
        ("/", "GET"): ("/", row(302, 302, 302, 302, 302)),
        # portal: uploader
        ("/submissions/new", "GET"): ("/submissions/new", SIGNED_IN),
        ("/submissions/new", "POST"): ("/submissions/new", row(302, 400, 400, 400, 400)),
        ("/submissions", "GET"): ("/submissions", SIGNED_IN),
        ("/submissions/<int:submission_id>", "GET"): (f"/submissions/{sid}", row(302, 200, 404, 404, 404)),
        ("/submissions/<int:submission_id>/resubmit", "POST"): (f"/submissions/{sid}/resubmit",
                                                               row(302, 400, 404, 404, 404)),
        ("/submissions/<int:submission_id>/status.json", "GET"): (f"/submissions/{sid}/status.json",
                                                                  row(302, 200, 404, 404, 404)),
        ("/account", "GET"): ("/account", SIGNED_IN),
        ("/account", "POST"): ("/account", row(302, 302, 302, 302, 302)),
        ("/favicon.ico", "GET"): ("/favicon.ico", EVERYONE_200),
        # portal: reviewer
        ("/review", "GET"): ("/review", REVIEWERS),
        ("/review/bulk", "POST"): ("/review/bulk", REVIEWERS_POST),
        ("/review/<int:submission_id>", "GET"): (f"/review/{sid}", REVIEWERS),
        ("/review/<int:submission_id>/claim", "POST"): (f"/review/{sid}/claim", REVIEWERS_POST),
        ("/review/<int:submission_id>/release", "POST"): (f"/review/{sid}/release", REVIEWERS_POST),
        ("/review/<int:submission_id>/decide", "POST"): (f"/review/{sid}/decide", REVIEWERS_POST),
        ("/review/<int:submission_id>/revoke", "POST"): (f"/review/{sid}/revoke", ADMINS_POST),
        # portal: admin
        ("/admin", "GET"): ("/admin", ADMINS),
        ("/admin/users", "GET"): ("/admin/users", ADMINS),
        ("/admin/users", "POST"): ("/admin/users", ADMINS_POST_FORM),
        ("/admin/users/<int:user_id>/role", "POST"): (f"/admin/users/{uid}/role", ADMINS_POST),
        ("/admin/catalogue", "GET"): ("/admin/catalogue", ADMINS),
        ("/admin/activities/<code>", "POST"): ("/admin/activities/EXPLORE", ADMINS_POST_FORM),
        ("/admin/tags", "POST"): ("/admin/tags", ADMINS_POST),
        ("/admin/tags/remove", "POST"): ("/admin/tags/remove", ADMINS_POST),
        ("/admin/kajabi", "GET"): ("/admin/kajabi", ADMINS),
        ("/admin/kajabi/<int:event_id>/attach", "POST"): (f"/admin/kajabi/{eid}/attach", ADMINS_POST),
        ("/admin/kajabi/reconcile", "POST"): ("/admin/kajabi/reconcile", ADMINS_POST),
        ("/admin/outbox", "GET"): ("/admin/outbox", ADMINS),
        ("/admin/unscannable", "GET"): ("/admin/unscannable", ADMINS),
        ("/admin/unscannable/<int:file_id>/scan-again", "POST"): ("/admin/unscannable/1/scan-again", ADMINS_POST),
        ("/admin/outbox/retry", "POST"): ("/admin/outbox/retry", ADMINS_POST),
        ("/admin/retention", "GET"): ("/admin/retention", ADMINS),
        ("/admin/retention", "POST"): ("/admin/retention", ADMINS_POST),
        ("/admin/backfills", "GET"): ("/admin/backfills", ADMINS),
        ("/admin/progress", "GET"): ("/admin/progress", ADMINS),
        ("/admin/jobs", "GET"): ("/admin/jobs", ADMINS),
        ("/admin/operations", "GET"): ("/admin/operations", ADMINS),
        ("/admin/operations/charts/<name>.svg", "GET"): ("/admin/operations/charts/latency.svg", ADMINS),
        # last: it ends the session
        ("/logout", "POST"): ("/logout", row(302, 302, 302, 302, 302)),
    }


def _rules(app) -> set[tuple[str, str]]:
    return {(rule.rule, method) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


@pytest.fixture
def samples(app):
    ids = people(app)
    sid, [fid] = in_review(app, ids["owner"])
    with app.app_context():
        event = KajabiEvent(event_id="evt-matrix", event_type="tag_added", payload={}, contact_id="c-1",
                            email="nobody@example.com", tag="elevate-ai-1-completed", state="queued_unmatched")
        db.session.add(event)
        db.session.commit()
        eid = event.id
    return {"submission": sid, "file": fid, "user": ids["other"], "event": eid}


def test_every_route_has_an_entry(app, samples):
    entries = set(matrix(samples))
    missing = sorted(_rules(app) - entries)
    assert not missing, f"routes without an access-matrix entry (add them to tests/test_access_matrix.py): {missing}"
    stale = sorted(entries - _rules(app))
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"


def test_every_route_answers_each_role_as_expected(app, samples):
    clients = {}
    for role in ROLES:
        clients[role] = app.test_client()
        if role != "anonymous":
            sign_in(clients[role], role)
    wrong = []
    for (rule, method), (path, expected) in matrix(samples).items():
        for role in ROLES:
            response = clients[role].open(path, method=method)
            if response.status_code != expected[role]:
                wrong.append(f"{method} {path} as {role}: {response.status_code}, expected {expected[role]}")
            elif role == "anonymous" and response.status_code == 302 and rule not in ("/", "/logout"):
                if urlparse(response.headers["Location"]).path != "/login":
                    wrong.append(f"{method} {path} as anonymous redirects to {response.headers['Location']}")
    assert not wrong, "\n".join(wrong)
