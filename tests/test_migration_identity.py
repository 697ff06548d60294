"""Migration 0004_evidence on PostgreSQL and SQLite: accounts whose addresses collide once spelled
one way stop it with a report naming them, and nothing changes; otherwise every stored address is
rewritten to the form sign-in compares, and thumbnails already made are marked made."""
from __future__ import annotations

import logging
import unicodedata

import pytest
from flask_migrate import upgrade
from sqlalchemy import inspect, text

from app import create_app
from core.platform.db import db
from tests.conftest import _recreate_database, base_env

NFC = unicodedata.normalize("NFC", "Zoë.Tester@Example.com")
NFD = unicodedata.normalize("NFD", "zoë.tester@example.com ")
CANONICAL = unicodedata.normalize("NFC", "zoë.tester@example.com")


@pytest.fixture(params=["postgresql", "sqlite"])
def at_0002(request, tmp_path):
    env = base_env(str(tmp_path / "storage"))
    if request.param == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{tmp_path}/identity.db"
    else:
        env["DATABASE_URL"] = env["DATABASE_URL"] + "_identity"
        _recreate_database(env["DATABASE_URL"])
    app = create_app(env)
    with app.app_context():
        upgrade(revision="0002")
        yield app
        db.session.remove()
        db.engine.dispose()


def _add_user(user_id: int, email: str) -> None:
    db.session.execute(text("INSERT INTO users (id, email, name, role, password_hash, active) "
                            "VALUES (:i, :e, 'x', 'uploader', 'h', :a)"), {"i": user_id, "e": email, "a": True})
    db.session.commit()


def _revision() -> str:
    return db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()


def test_colliding_accounts_stop_the_migration_with_a_report(at_0002, caplog):
    _add_user(1, NFC)
    _add_user(2, NFD)
    _add_user(3, "someone.else@example.com")
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as stopped:
        upgrade()
    assert stopped.value.code == 1  # `flask db upgrade` exits non-zero
    report = caplog.text
    assert "these accounts share one e-mail address" in report and "Nothing was changed" in report
    assert f"{CANONICAL}: id 1 {NFC!r}, id 2 {NFD!r}" in report
    assert "someone.else" not in report
    db.session.rollback()
    assert _revision() == "0002"
    assert "scan_reason" not in {c["name"] for c in inspect(db.engine).get_columns("evidence_files")}
    assert db.session.execute(text("SELECT email FROM users ORDER BY id")).scalars().all() == [
        NFC, NFD, "someone.else@example.com"]

    # The admin resolves it (here: renames the second account); then the migration goes through.
    db.session.execute(text("UPDATE users SET email = 'zoe.second@example.com' WHERE id = 2"))
    db.session.commit()
    upgrade(revision="0004_evidence")  # the migration under test, whatever comes after it
    assert _revision() == "0004_evidence"
    assert db.session.execute(text("SELECT email FROM users ORDER BY id")).scalars().all() == [
        CANONICAL, "zoe.second@example.com", "someone.else@example.com"]


def test_addresses_and_kajabi_events_are_rewritten_to_one_spelling(at_0002):
    _add_user(1, NFD)
    db.session.execute(text(
        "INSERT INTO kajabi_events (event_id, event_type, payload, email, state, received_at) "
        "VALUES ('e1', 'tag_added', '{}', :e, 'queued_unmatched', CURRENT_TIMESTAMP)"), {"e": NFD.upper()})
    db.session.commit()
    upgrade()
    assert db.session.execute(text("SELECT email FROM users")).scalar() == CANONICAL
    assert db.session.execute(text("SELECT email FROM kajabi_events")).scalar() == CANONICAL
    columns = {c["name"] for c in inspect(db.engine).get_columns("evidence_files")}
    assert {"scan_reason", "thumbnail_state", "thumbnail_error"} <= columns
