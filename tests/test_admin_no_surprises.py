"""Admin pages without surprises: users search and pages with one role label per row, errors in
words next to their field with what was typed kept, retention runs (dry runs too) in plain words,
a confirmation step before Run now, and `outbox replay --topic` refusing an unknown topic."""
from __future__ import annotations

import re

from core.platform.db import db
from core.platform.models import Activity, Run, User
from tests.test_portal_support import flashes, people, sign_in


def _admin(app):
    client = app.test_client()
    sign_in(client, "admin")
    return client


def test_users_search_and_pages(app):
    people(app)
    with app.app_context():
        # Rows straight in (no password hashing: the page only lists them).
        db.session.add_all(User(email=f"teacher{i:02d}@school.example", role="uploader", name=f"Teacher {i}",
                                city="Nantes" if i == 7 else None) for i in range(55))
        db.session.commit()
    client = _admin(app)
    first = client.get("/admin/users").get_data(as_text=True)
    assert "60 users, page 1 of 2." in first and 'rel="next"' in first
    assert first.count("admin@example.com</td>") == 1 and "teacher50@school.example" not in first
    second = client.get("/admin/users?page=2").get_data(as_text=True)
    assert "teacher50@school.example" in second and "page 2 of 2" in second
    # A page past the end (found by an outside test: an empty list, no word) shows the last page.
    beyond = client.get("/admin/users?page=99999").get_data(as_text=True)
    assert "page 2 of 2" in beyond and "teacher50@school.example" in beyond
    # One visible label per column, not "Role for X" on every row (it stays for screen readers).
    assert len(re.findall(r'<label for="role-\d+" class="visually-hidden">Role for ', first)) == 50
    found = client.get("/admin/users?q=nantes").get_data(as_text=True)
    assert "1 user matching" in found and "teacher07@school.example" in found and "teacher08" not in found
    assert "No user matches" in client.get("/admin/users?q=100%25_").get_data(as_text=True)  # % and _ are literal
    assert client.get("/admin/users?q=%00x").status_code == 400  # a control character: refused at the door, not a 500
    assert client.get("/admin/users?q=x&page=%C2%B2").status_code == 200  # "²" is no page number: the first page


def test_bad_email_and_bad_points_say_what_to_do_next_to_the_field_and_keep_the_value(app):
    people(app)
    client = _admin(app)
    page = client.post("/admin/users", data={"email": "not-an-address", "role": "uploader"})
    html = page.get_data(as_text=True)
    assert page.status_code == 400
    assert re.search(r'id="email-error">Enter an e-mail address such as name@example.org.</p>', html)
    assert 'value="not-an-address"' in html

    page = client.post("/admin/activities/EXPLORE", data={"name": "Explore", "points": "250000", "cap_period": "once",
                                                          "active": "y"})
    html = page.get_data(as_text=True)
    assert page.status_code == 400
    assert 'id="points-EXPLORE-error">Enter a whole number from 0 to 100000.</p>' in html
    assert 'value="250000"' in html and ".." not in " ".join(flashes(page))
    with app.app_context():
        assert db.session.get(Activity, "EXPLORE").points == 50


def test_retention_runs_in_plain_words_with_dry_runs_listed_and_run_now_confirmed(app):
    people(app)
    client = _admin(app)
    page = client.post("/admin/retention", data={"days": "730", "dry_run": "Dry run"}, follow_redirects=True)
    html = page.get_data(as_text=True).split("Recent runs")[1]  # the list of runs
    assert "Dry run (nothing deleted)" in html and "0 files that would be deleted" in html
    assert "None" not in html and "dry_run" not in html and "False" not in html
    assert not re.search(r"\d\d:\d\d:\d\d\.\d+", html)  # no microseconds anywhere
    assert re.search(r"keep evidence for 730 days; older than \d{4}-\d\d-\d\d \d\d:\d\d UTC", html)

    held = client.post("/admin/retention", data={"days": "730", "run": "Run now"})
    text = held.get_data(as_text=True)
    assert held.status_code == 200 and "Delete every evidence file older than 730 days" in text
    assert 'name="confirmed" value="yes"' in text and "Cancel, change nothing" in text
    with app.app_context():
        assert [r.status for r in db.session.query(Run)] == ["dry_run"]  # nothing queued yet


def test_outbox_replay_refuses_an_unknown_topic_with_the_valid_ones(app):
    result = app.test_cli_runner().invoke(args=["outbox", "replay", "--topic", "nope"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: unknown topic 'nope'; valid topics: badge.awarded, ledger.recorded"


def test_favicon_is_served(app):
    response = app.test_client().get("/favicon.ico")
    assert response.status_code == 200 and response.data[:4] == b"\x00\x00\x01\x00"
    assert response.mimetype == "image/vnd.microsoft.icon"


def test_the_confirmation_step_works_with_csrf_on(make_app):
    from tests.test_portal_support import csrf_token

    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True})
    people(app)
    client = app.test_client()
    token = csrf_token(client, "/login")
    client.post("/login", data={"email": "admin@example.com", "password": "correct-horse-battery", "csrf_token": token})
    token = csrf_token(client, "/admin/retention")
    held = client.post("/admin/retention", data={"days": "730", "run": "Run now", "csrf_token": token})
    assert held.status_code == 200 and "Run retention now?" in held.get_data(as_text=True)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', held.get_data(as_text=True)))
    assert fields["confirmed"] == "yes" and fields["days"] == "730" and fields["csrf_token"]
    done = client.post("/admin/retention", data=fields, follow_redirects=True)
    assert any(m.startswith("Retention run queued.") for m in flashes(done))
