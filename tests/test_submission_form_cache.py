"""The new-submission form is built once per catalogue and kept (portal/submission_form.py): an
admin's change to the activities must still show on the very next form, whichever process made
it, and a form built for the old catalogue must never judge a new post."""
from __future__ import annotations

import io
import re

from sqlalchemy import event, update

from core.platform.db import db
from core.platform.models import Activity
from portal.submission_form import evidence_form
from tests.evidence_support import CSV, yesterday
from tests.test_portal_support import people, sign_in


def _client(app, who: str):
    client = app.test_client()
    sign_in(client, who)
    return client


def test_an_admins_edit_shows_on_the_next_upload_form(app):
    people(app)
    owner, admin = _client(app, "owner"), _client(app, "admin")
    html = owner.get("/submissions/new").get_data(as_text=True)  # built and kept
    assert 'value="PRESENT"' in html and "Explore (EXPLORE)" in html

    assert admin.post("/admin/activities/EXPLORE", data={"name": "Explore outdoors", "points": "50",
                                                         "cap_period": "once", "active": "y"}).status_code == 302
    assert admin.post("/admin/activities/PRESENT", data={"name": "Present", "points": "20",
                                                         "cap_period": "once"}).status_code == 302  # inactive

    html = owner.get("/submissions/new").get_data(as_text=True)
    assert "Explore outdoors (EXPLORE)" in html and "Explore (EXPLORE)" not in html
    assert 'value="PRESENT"' not in html
    refused = owner.post("/submissions/new", data={"activity_code": "PRESENT", "session_date": "2026-01-01"},
                         content_type="multipart/form-data")
    assert refused.status_code == 400


def test_a_counter_changed_in_the_database_is_the_next_forms_limit(app):
    people(app)
    owner = _client(app, "owner")
    assert "Peers trained (Amplify only, 0 to 50)" in owner.get("/submissions/new").get_data(as_text=True)
    with app.app_context():  # another process, or SQL by hand: no hook in this process sees it
        counters = db.session.get(Activity, "AMPLIFY").counters
        counters = [{**c, "max": 5} if c["name"] == "peers" else c for c in counters]
        db.session.execute(update(Activity).where(Activity.code == "AMPLIFY").values(counters=counters))
        db.session.commit()

    assert "Peers trained (Amplify only, 0 to 5)" in owner.get("/submissions/new").get_data(as_text=True)
    page = owner.post("/submissions/new", data={"activity_code": "AMPLIFY", "session_date": "2026-01-01",
                                                "counter_peers": "6"}, content_type="multipart/form-data")
    assert page.status_code == 400
    assert re.search(r'id="counter_peers-error">Enter a number from 0 to 5\.</p>', page.get_data(as_text=True))


def test_the_same_catalogue_reuses_one_built_form(app):
    people(app)
    with app.test_request_context():
        first, _ = evidence_form()
        db.session.rollback()
        assert evidence_form()[0] is first  # built once, not per request


def test_an_upload_reads_the_activities_once(app):
    # The form's activities stay in the session, so the domain's check of the chosen one finds
    # its row there: one SELECT of the catalogue per upload, as before the form was kept.
    people(app)
    owner = _client(app, "owner")
    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        response = owner.post("/submissions/new", data={
            "activity_code": "EXPLORE", "session_date": yesterday().isoformat(),
            "files": (io.BytesIO(CSV), "attendance.csv", "text/csv")}, content_type="multipart/form-data")
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert response.status_code == 302
    assert len([s for s in statements if re.search(r"\bFROM activities\b", s)]) == 1
