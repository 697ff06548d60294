"""One person, one identity, however their keyboard spells it: e-mail addresses are compared in
one form (NFC, trimmed, casefolded) wherever they come in, and passwords are normalised (NFKC)
before hashing and checking, without locking out anyone whose hash predates the rule."""
from __future__ import annotations

import html as html_lib
import json
import unicodedata

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from core.accounts.users import create_user, normalise_email, normalise_password
from core.platform.db import db
from core.platform.models import KajabiEvent, LedgerEntry, User
from core.points import backfill, catalogue
from tests.test_kajabi import SECRET, burst, documented, post
from tests.test_portal_support import csrf_token

NFC_EMAIL = unicodedata.normalize("NFC", "zoë.tester@example.com")
NFD_EMAIL = unicodedata.normalize("NFD", "zoë.tester@example.com")
PASSWORD_NFC = unicodedata.normalize("NFC", "Ångström-Café-2024")
PASSWORD_NFD = unicodedata.normalize("NFD", "Ångström-Café-2024")


def _user(app) -> User:
    with app.app_context():
        user = db.session.scalars(select(User).where(User.role == "uploader")).one()
        db.session.expunge(user)
        return user


def _sign_in(app, email: str, password: str):
    return app.test_client().post("/login", data={"email": email, "password": password})


def test_the_spellings_are_really_different_bytes():
    assert NFC_EMAIL != NFD_EMAIL and PASSWORD_NFC != PASSWORD_NFD
    assert normalise_email(f"  {NFD_EMAIL.upper()}\t") == NFC_EMAIL
    assert normalise_email("STRASSE@example.com") == normalise_email("straße@example.com")
    assert normalise_password("ＡＢＣ１２３") == "ABC123"  # full-width forms, NFKC


def test_an_account_made_with_nfc_signs_in_with_the_nfd_spelling(app):
    with app.app_context():
        create_user(NFC_EMAIL, "uploader", PASSWORD_NFC)
        db.session.commit()
    assert _sign_in(app, NFD_EMAIL, PASSWORD_NFD).status_code == 302
    assert _sign_in(app, f" {NFC_EMAIL.upper()} ", PASSWORD_NFC).status_code == 302
    assert _sign_in(app, NFD_EMAIL, "Ångström-Café-2025").status_code != 302


def test_a_hash_from_before_the_rule_still_signs_in_and_is_rehashed(app):
    with app.app_context():
        user, _ = create_user(NFC_EMAIL, "uploader", "placeholder-password")
        user.password_hash = generate_password_hash(PASSWORD_NFD)  # stored raw, as the old code did
        db.session.commit()
    assert _sign_in(app, NFC_EMAIL, PASSWORD_NFD).status_code == 302  # the raw form still works
    stored = _user(app).password_hash
    assert check_password_hash(stored, PASSWORD_NFC) and not check_password_hash(stored, PASSWORD_NFD)
    assert _sign_in(app, NFC_EMAIL, PASSWORD_NFC).status_code == 302  # and now every spelling does
    assert _sign_in(app, NFC_EMAIL, "wrong-password").status_code != 302
    assert _user(app).password_hash == stored  # a failed try changes nothing


def test_the_admin_form_refuses_a_second_account_that_looks_identical(app):
    with app.app_context():
        create_user(NFC_EMAIL, "uploader", PASSWORD_NFC)
        create_user("admin@example.com", "admin", "admin-password")
        db.session.commit()
    client = app.test_client()
    assert client.post("/login", data={"email": "admin@example.com", "password": "admin-password"}).status_code == 302
    page = client.post("/admin/users", data={"email": NFD_EMAIL, "name": "Zoe again", "role": "uploader",
                                             "csrf_token": csrf_token(client, "/admin/users")})
    text = html_lib.unescape(page.get_data(as_text=True))
    assert page.status_code in (400, 409) and f"A user with e-mail {NFC_EMAIL} already exists." in text
    with app.app_context():
        assert db.session.query(User).count() == 2


def test_the_command_refuses_it_too_with_one_line(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "create", NFC_EMAIL, "--role", "uploader", "--password", PASSWORD_NFC]).exit_code == 0
    again = runner.invoke(args=["users", "create", f" {NFD_EMAIL.upper()}", "--role", "uploader"])
    assert again.exit_code != 0 and len(again.output.strip().splitlines()) == 1 and "already exists" in again.output
    with app.app_context():
        assert [u.email for u in db.session.query(User)] == [NFC_EMAIL]


def test_a_kajabi_hook_with_the_nfd_spelling_is_matched(make_app):
    app = make_app(KAJABI_WEBHOOK_SECRET=SECRET)
    with app.app_context():
        catalogue.seed_catalogue()
        user, _ = create_user(NFC_EMAIL, "uploader")
        db.session.commit()
        user_id = user.id
    client = app.test_client()
    assert post(client, documented("evt-nfd", email=NFD_EMAIL.upper(), contact="c-nfd")).status_code == 202
    burst(app)
    with app.app_context():
        event = db.session.scalars(select(KajabiEvent)).one()
        assert (event.state, event.user_id, event.email) == ("ledgered", user_id, NFC_EMAIL)
        assert db.session.query(LedgerEntry).filter_by(user_id=user_id, activity_code="LEARN").count() == 1


def test_a_backfill_line_with_the_nfd_spelling_is_matched(app, tmp_path):
    with app.app_context():
        catalogue.seed_catalogue()
        user, _ = create_user(NFC_EMAIL, "uploader")
        db.session.commit()
        path = tmp_path / "items.jsonl"
        path.write_text(json.dumps({"email": f" {NFD_EMAIL} ", "activity_code": "LEARN", "event_id": "bf-1",
                                    "event_time": "2024-01-05T10:00:00Z"}) + "\n", encoding="utf-8")
        (outcome,) = backfill.simulate(backfill.read_items(str(path)))
        assert outcome["user_id"] == user.id and outcome["email"] == NFC_EMAIL
