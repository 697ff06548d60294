"""DB_STATEMENT_TIMEOUT_MS on the machine's PostgreSQL: a statement that runs or waits too long is
cancelled by the server, the client gets a 503 envelope and nothing half-written, and migrations
are exempt."""
from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg
import pytest
from flask_migrate import upgrade
from psycopg.errors import QueryCanceled
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app import create_app
from core.platform.db import db
from core.platform.models import KajabiEvent
from tests.conftest import DATABASE_URL
from tests.evidence_support import setup_people, sign_in
from tests.services.ports import free_port

SECRET = "limits-test-secret"


def hook_body(event_id: str) -> str:
    return json.dumps({"id": event_id, "event": "tag_added", "payload": [
        {"type": "contacts", "id": "c-1", "attributes": {"email": "someone@example.com"}},
        {"type": "contact_tags", "id": "t-1", "attributes": {"name": "elevate-ai-1-completed"}}]})


def _dsn(url: str = DATABASE_URL) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_every_connection_carries_the_timeout_and_zero_turns_it_off(make_app):
    make_app()  # the fixture cleans the tables through the first app: not under the short limit
    app = make_app(DB_STATEMENT_TIMEOUT_MS="250")
    with app.app_context():
        assert db.session.scalar(text("SHOW statement_timeout")) == "250ms"
        with pytest.raises(OperationalError) as caught:
            db.session.execute(text("SELECT pg_sleep(5)"))
        assert isinstance(caught.value.orig, QueryCanceled)
        db.session.rollback()
    unbounded = make_app(DB_STATEMENT_TIMEOUT_MS="0")
    with unbounded.app_context():
        assert db.session.scalar(text("SHOW statement_timeout")) == "0"


def test_options_already_in_the_database_url_are_kept(make_app):
    make_app()  # the fixture cleans the tables through the first app: not under the short limit
    app = make_app(DATABASE_URL=f"{DATABASE_URL}?options=-c%20application_name%3Dpoints-limits",
                   DB_STATEMENT_TIMEOUT_MS="250")
    with app.app_context():
        assert db.session.scalar(text("SHOW application_name")) == "points-limits"
        assert db.session.scalar(text("SHOW statement_timeout")) == "250ms"


def test_a_hook_stuck_behind_a_lock_gets_503_and_its_retry_is_stored_once(make_app):
    make_app()  # the fixture cleans the tables through the first app: not under the short limit
    app = make_app(KAJABI_WEBHOOK_SECRET=SECRET, DB_STATEMENT_TIMEOUT_MS="300")
    client = app.test_client()
    body = hook_body("evt-locked")
    url = f"/api/webhooks/kajabi?token={SECRET}"
    # Another session holds the table, as a long migration or a stuck transaction would.
    with psycopg.connect(_dsn()) as blocker:
        blocker.execute("LOCK TABLE kajabi_events IN ACCESS EXCLUSIVE MODE")
        stuck = client.post(url, data=body, content_type="application/json")
        blocker.rollback()
    assert stuck.status_code == 503
    assert stuck.json["type"] == "unavailable" and stuck.json["code"] == "database_timeout"
    assert stuck.headers["Retry-After"] == "5"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(KajabiEvent)) == 0

    retried = client.post(url, data=body, content_type="application/json")
    assert retried.status_code == 202
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(KajabiEvent)) == 1


def test_without_a_database_the_hook_answers_503_database_unavailable(make_app):
    make_app()  # the fixture cleans the real database through the first app
    app = make_app(KAJABI_WEBHOOK_SECRET=SECRET,
                   DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/points?connect_timeout=2")
    client = app.test_client()
    response = client.post(f"/api/webhooks/kajabi?token={SECRET}", data=hook_body("evt-nodb"),
                           content_type="application/json")
    assert response.status_code == 503 and response.json["code"] == "database_unavailable"
    assert response.headers["Retry-After"] == "5" and "nothing was saved" in response.json["message"]


def test_a_portal_page_stuck_behind_a_lock_says_to_try_again(make_app):
    setup_people(make_app())  # cleaning and seeding run without the short limit
    app = make_app(DB_STATEMENT_TIMEOUT_MS="300")
    client = app.test_client()
    sign_in(client, "owner")
    with psycopg.connect(_dsn()) as blocker:
        blocker.execute("LOCK TABLE submissions IN ACCESS EXCLUSIVE MODE")
        page = client.get("/submissions")
        blocker.rollback()
    assert page.status_code == 503 and page.mimetype == "text/html" and page.headers["Retry-After"] == "5"
    assert "took too long to answer" in page.get_data(as_text=True)
    assert client.get("/submissions").status_code == 200  # the lock gone, the same page works


def test_migrations_run_whatever_the_timeout_and_leave_it_in_place(make_settings):
    """A migration waits a whole second on a lock, five times the app's limit, and completes."""
    name = f"points_limits_{uuid.uuid4().hex[:8]}"
    url = make_url(DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        # Another session creates the migration's first table and holds it uncommitted, so the
        # migration's CREATE TABLE waits; it is released 1 s after the migration is seen waiting.
        holder = psycopg.connect(_dsn(url))
        holder.execute("CREATE TABLE activities (code text)")
        waited = []

        def release_once_waited():
            with psycopg.connect(_dsn(), autocommit=True) as watcher:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not waited:
                    if watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                       "AND wait_event_type = 'Lock'", (name,)).fetchone()[0]:
                        time.sleep(1.0)
                        waited.append(True)
                    else:
                        time.sleep(0.02)
            holder.rollback()

        release = threading.Thread(target=release_once_waited)
        release.start()
        app = create_app(make_settings(None, DATABASE_URL=url, DB_STATEMENT_TIMEOUT_MS="200"))
        try:
            with app.app_context():
                upgrade()
                assert waited == [True]  # the migration really sat behind the lock
                assert db.session.scalar(text("SELECT count(*) FROM alembic_version")) == 1
                assert db.session.scalar(text("SHOW statement_timeout")) == "200ms"
                with pytest.raises(OperationalError):  # the app's own statements are still bounded
                    db.session.execute(text("SELECT pg_sleep(1)"))
                db.session.rollback()
                db.engine.dispose()
        finally:
            release.join()
            holder.close()
    finally:
        with psycopg.connect(_dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_deadlock_answers_503_database_conflict_and_saves_nothing(make_app):
    """A real lock cycle: the reviewer's approval holds the submission row and waits for the
    uploader's ledger lock, which another session holds while it waits for that row. PostgreSQL
    breaks the cycle by rolling back the approval (the other session waits 10 s before checking)."""
    from core.points.ledger import LOCK_NAMESPACE
    from core.platform.models import LedgerEntry, Submission
    from tests.test_portal_support import in_review, people

    app = make_app()
    ids = people(app)
    sid, _ = in_review(app, ids["owner"], "EXPLORE")
    client = app.test_client()
    sign_in(client, "reviewer")
    other = psycopg.connect(_dsn())
    other.execute("SET deadlock_timeout = '10s'")
    other.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, ids["owner"]))
    answer = {}
    approving = threading.Thread(target=lambda: answer.setdefault(
        "r", client.post(f"/review/{sid}/decide", data={"approve": "Approve"}, headers={"Accept": "application/json"})))
    approving.start()
    try:
        with psycopg.connect(_dsn(), autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while not watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock%'").fetchone()[0]:
                assert time.monotonic() < deadline, "the approval never waited for the ledger lock"
                time.sleep(0.02)
        other.execute("SELECT id FROM submissions WHERE id = %s FOR UPDATE", (sid,))  # closes the cycle
    finally:
        approving.join(30)
        other.rollback()
        other.close()
    response = answer["r"]
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json["code"] == "database_conflict" and "nothing was saved" in response.json["message"]
    with app.app_context():
        assert db.session.get(Submission, sid).status == "in_review"
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 0


def test_a_pooled_connection_whose_backend_was_terminated_is_replaced_at_checkout(make_app):
    """pg_terminate_backend (an operator, a failover, idle_session_timeout) ends a pooled session:
    the server sends FATAL and closes. The next checkout sees the socket readable and takes a new
    connection (core.platform.db.drop_dead_on_checkout), so the hook is stored, not answered 503."""
    make_app()
    app = make_app(KAJABI_WEBHOOK_SECRET=SECRET)
    client = app.test_client()
    url = f"/api/webhooks/kajabi?token={SECRET}"
    assert client.post(url, data=hook_body("evt-first"), content_type="application/json").status_code == 202
    with app.app_context():
        pids = set(db.session.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                           "AND pid <> pg_backend_pid()")))
        mine = db.session.scalar(text("SELECT pg_backend_pid()"))
        db.session.commit()  # back to the pool: now the pool holds only sessions about to end
    with psycopg.connect(_dsn(), autocommit=True) as admin:
        for pid in pids | {mine}:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                            (list(pids | {mine}),)).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.05)
    response = client.post(url, data=hook_body("evt-second"), content_type="application/json")
    assert response.status_code == 202, response.get_data(as_text=True)[:300]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(KajabiEvent)) == 2
