"""Breakit: the Kajabi webhook's hostile bodies. "No input produces a 500"; a refused hook
stores nothing and answers the envelope."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from core.platform.db import db
from core.platform.models import KajabiEvent
from tests.test_kajabi import documented, kapp, post  # noqa: F401

# U+FB03 LATIN SMALL LIGATURE FFI: lower() leaves it one character, casefold() (what
# normalise_email stores) makes it three. The door checks the length after lower(), the column
# takes normalise_email's spelling: 150 ligatures pass the check and overflow varchar(320).
LIGATURE_EMAIL = "\ufb03" * 150 + "@b.co"


@pytest.mark.parametrize("body", [
    documented("lig-1", email=LIGATURE_EMAIL),
    {"event_id": "lig-2", "contact": {"id": "c-1", "email": LIGATURE_EMAIL}, "tag": {"name": "elevate-ai-1-completed"}},
], ids=["documented", "flat"])
def test_an_email_that_grows_when_casefolded_is_refused_not_a_500(kapp, body):
    response = post(kapp.test_client(), body)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    envelope = response.get_json()
    assert envelope["type"] == "validation_error" and envelope["code"] == "invalid_payload"
    with kapp.app_context():
        assert db.session.scalar(select(func.count()).select_from(KajabiEvent)) == 0
