"""Breakit: the review queue's uploader filter and the e-mail spelling the service stores.
E-mails are stored casefolded (normalise_email: "Straße@" -> "strasse@"); sign-in takes the
address as the person types it. The queue filter lower()s what the reviewer types instead, so the
uploader's own address, as they spell it, finds nothing."""
from __future__ import annotations

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
