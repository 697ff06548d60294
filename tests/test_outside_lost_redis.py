"""brk2: a lost Redis (REDIS_URL at a closed port). The hook answers 202 and stores its event (held
up). Sign-in and the upload form must not be a 500 HTML page either."""
from __future__ import annotations

import io
import socket

import pytest

from core.platform.db import db
from core.platform.models import Submission
from tests.evidence_support import PASSWORD, png, yesterday
from tests.test_portal_support import people


@pytest.fixture
def lost(make_app):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    return app, people(app)


def test_sign_in_without_redis_is_not_a_500_page(lost):
    app, _ = lost
    response = app.test_client().post("/login", data={"email": "owner@example.com", "password": PASSWORD})
    assert response.status_code != 500, response.get_data(as_text=True)[:200]
    html = response.get_data(as_text=True)
    assert response.status_code == 503 and "Sign-in is unavailable for a moment" in html
    assert 'value="owner@example.com"' in html, "what was typed is kept"


def test_upload_without_redis_is_not_a_500_page(lost):
    app, ids = lost
    client = app.test_client()
    with client.session_transaction() as session:  # signed in already (sign-in itself needs Redis)
        session["_user_id"] = str(ids["owner"])
        session["_fresh"] = True
    response = client.post("/submissions/new", content_type="multipart/form-data", data={
        "activity_code": "EXPLORE", "session_date": yesterday().isoformat(), "files": [(io.BytesIO(png()), "p.png")]})
    with app.app_context():
        stored = db.session.query(Submission).count()
    assert response.status_code != 500, (response.status_code, stored, response.get_data(as_text=True)[:200])
