"""Breakit: the review queue's uploader filter and the e-mail spelling the service stores.
E-mails are stored casefolded (normalise_email: "Straße@" -> "strasse@"); sign-in takes the
address as the person types it. The queue filter lower()s what the reviewer types instead, so the
uploader's own address, as they spell it, finds nothing."""
from __future__ import annotations

import pytest

from core.accounts.users import create_user
from core.platform.db import db
from tests.test_portal_support import PASSWORD, insert, people, sign_in


def test_uploader_filter_by_the_address_as_the_uploader_spells_it(app):
    people(app)
    with app.app_context():
        user, _ = create_user("Straße@example.com", "uploader", PASSWORD, name="Jo Bloggs")
        db.session.commit()
        uid = user.id
    [sid] = insert(app, uid)
    client = app.test_client()
    sign_in(client, "reviewer")
    html = client.get("/review?uploader=Straße@example.com").get_data(as_text=True)
    assert f">#{sid}</a>" in html, "the uploader's own e-mail address finds nothing in the queue"


def test_the_admins_user_search_finds_the_address_as_its_owner_spells_it(app):
    """The same kind on the admin's user search (it lower()ed what was typed too); both now use
    core.accounts.users.matching. A wildcard typed stays literal."""
    people(app)
    with app.app_context():
        create_user("Straße@example.com", "uploader", PASSWORD, name="Jo Bloggs")
        db.session.commit()
    client = app.test_client()
    sign_in(client, "admin")
    assert "strasse@example.com" in client.get("/admin/users?q=Straße@example").get_data(as_text=True)
    assert "strasse@example.com" in client.get("/admin/users?q=JO BLOG").get_data(as_text=True)
    assert "strasse@example.com" not in client.get("/admin/users?q=str_sse").get_data(as_text=True)


@pytest.mark.parametrize("name", ["İlker Yılmaz", "ΝΙΚΟΣ ΠΑΠΑΣ"])
def test_a_name_typed_exactly_as_shown_finds_its_uploader(app, name):
    """The queue shows the uploader's name; typing that very name into the uploader filter must
    find them. Python's str.lower() (used on the typed text) and PostgreSQL's lower() (used on the
    stored name) disagree on "İ" (Python: "i" + combining dot U+0307; PostgreSQL: "i") and on a
    word-final capital sigma (Python: final "ς"; PostgreSQL: "σ"), so the LIKE never matches."""
    import re

    from core.review import queue_query as review

    ids = people(app)
    with app.app_context():
        user, _ = create_user("turkish-or-greek@example.org", "uploader", PASSWORD, name=name)
        db.session.commit()
        uid = user.id
    sids = insert(app, uid, 2)
    with app.app_context():
        page = review.queue(review.QueueFilters(uploader=name), ids["reviewer"])
        assert [r.id for r in page.items] == sids
        assert page.counts["in_review"] == 2
    client = app.test_client()
    sign_in(client, "reviewer")
    html = client.get("/review", query_string={"uploader": name}).get_data(as_text=True)
    assert [int(i) for i in re.findall(r'name="submission_ids" value="(\d+)"', html)] == sids
