"""The Kajabi webhook end to end on PostgreSQL + Redis + a real RQ burst worker."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
import requests
from flask_migrate import upgrade
from sqlalchemy import func, select

from app import create_app
from core.points import catalogue, kajabi, ledger
from core.accounts.users import create_user
from core.platform.db import db, utcnow
from core.platform.models import ActivityTag, KajabiEvent, LedgerEntry
from jobs import context
from jobs.worker import build_worker
from tests.conftest import serve

SECRET = "kajabi-test-secret"
URL = "/api/webhooks/kajabi"


@pytest.fixture
def kapp(make_app):
    app = make_app(KAJABI_WEBHOOK_SECRET=SECRET)
    with app.app_context():
        catalogue.seed_catalogue()
        db.session.add(ActivityTag(tag="elevate-ai-3-completed", activity_code="LEARN"))
        create_user("Known@Example.com", "uploader")
        db.session.commit()
    return app


def documented(event_id="evt-1", email="known@example.com", tag="Elevate-AI-1-Completed ", contact="c-100",
               event="tag_added") -> dict:
    return {"id": event_id, "event": event, "payload": [
        {"type": "contacts", "id": contact, "attributes": {"email": email, "name": "Known Person"}},
        {"type": "contact_tags", "id": "t-1", "attributes": {"name": tag}}]}


def post(client, body, token=SECRET, **kwargs):
    return client.post(f"{URL}?token={token}" if token else URL, data=json.dumps(body),
                       content_type="application/json", **kwargs)


def burst(app) -> None:
    context.bind(app)
    svc = app.extensions["points"]
    build_worker(svc).work(burst=True)


def events(app) -> list[KajabiEvent]:
    with app.app_context():
        rows = db.session.scalars(select(KajabiEvent).order_by(KajabiEvent.id)).all()
        db.session.expunge_all()
        return rows


def envelope(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"type", "code", "message", "details"} and body["code"] == code
    return body


def test_the_hook_stores_an_event_once_on_sqlite_too(make_app, make_settings, tmp_path):
    # store() picks the dialect's INSERT ... ON CONFLICT DO NOTHING; `make run` uses SQLite.
    make_app()  # a clean Redis db for the queue
    app = create_app(make_settings(None, DATABASE_URL=f"sqlite:///{tmp_path}/hooks.db", KAJABI_WEBHOOK_SECRET=SECRET))
    with app.app_context():
        upgrade()
    client = app.test_client()
    first, again = post(client, documented("evt-sqlite")), post(client, documented("evt-sqlite"))
    assert (first.status_code, first.get_json()["status"]) == (202, "queued")
    assert (again.status_code, again.get_json()["status"]) == (200, "duplicate")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(KajabiEvent)) == 1
        assert app.extensions["points"].queues["ledger"].count == 1
        db.engine.dispose()


def test_a_burst_of_hooks_queues_one_drain_that_ledgers_them_all(kapp):
    # Each hook asks Redis, and finds the one pending drain (core.points.kajabi.kick_drain); it takes all.
    client = kapp.test_client()
    for i, tag in enumerate(["Elevate-AI-1-Completed", "Elevate-AI-2-Completed", "Elevate-AI-3-Completed"]):
        assert post(client, documented(f"evt-burst-{i}", tag=tag)).status_code == 202
    with kapp.app_context():
        jobs = kapp.extensions["points"].queues["ledger"].jobs
        assert [j.func_name for j in jobs].count("jobs.kajabi.process_event") == 1
    burst(kapp)
    assert [(e.event_id, e.state) for e in events(kapp)] == [(f"evt-burst-{i}", "ledgered") for i in range(3)]


def test_documented_tag_added_is_ledgered_in_one_worker_cycle(kapp):
    client = kapp.test_client()
    response = post(client, documented())
    assert response.status_code == 202 and response.get_json() == {"event_id": "evt-1", "status": "queued"}
    burst(kapp)
    [event] = events(kapp)
    assert event.state == "ledgered" and event.result_code == "awarded" and event.tag == "elevate-ai-1-completed"
    assert event.ledgered_at is not None and event.ledgered_at >= event.received_at
    with kapp.app_context():
        entry = ledger.find("kajabi", "kajabi:tag:c-100:elevate-ai-1-completed")
        assert entry.delta_points == 10 and entry.id == event.ledger_id
        assert db.session.scalar(select(func.count()).select_from(KajabiEvent)) == 1
    # The same hook again: a duplicate, stored once, no new points.
    again = post(client, documented())
    assert again.status_code == 200 and again.get_json() == {"event_id": "evt-1", "status": "duplicate"}
    assert len(events(kapp)) == 1


def test_resent_tag_under_a_new_event_id_is_a_ledger_duplicate(kapp):
    client = kapp.test_client()
    post(client, documented("evt-1"))
    post(client, documented("evt-2"))
    burst(kapp)
    first, second = events(kapp)
    assert (first.result_code, second.result_code) == ("awarded", "duplicate_event")
    assert second.state == "ledgered" and second.ledger_id == first.ledger_id
    with kapp.app_context():
        assert ledger.user_totals(first.user_id)["total"] == 10


NO_CONTACT_ID = {"event_id": "flat-1", "contact": {"email": "known@example.com"}, "tag": {"name": "elevate-ai-1-completed"}}
# The same tag for the same person three ways: the documented hook (contact c-100), the same e-mail
# under another contact id, and no contact id at all; in both orders, so the first grant is keyed
# by a contact id once and by the user (no contact bound yet) once.
ORDERS = {"contact first": [documented("evt-1"), documented("evt-2", contact="c-555"), NO_CONTACT_ID],
          "no contact id first": [NO_CONTACT_ID, documented("evt-1"), documented("evt-2", contact="c-555")]}


def _process_per_event(app) -> None:
    with app.app_context():
        for row_id in kajabi.next_received():
            assert kajabi.process_and_commit(row_id, {})


@pytest.mark.parametrize("path", ["one batch", "first hook in its own batch", "per event"])
@pytest.mark.parametrize("order", list(ORDERS))
def test_one_grant_per_tag_per_user_whichever_contact_id_the_hook_carries(kapp, order, path):
    client = kapp.test_client()
    first_hook, *later = ORDERS[order]
    assert post(client, first_hook).status_code == 202
    if path == "first hook in its own batch":  # later hooks then meet the grant in the ledger, not in the batch
        burst(kapp)
    for body in later:
        assert post(client, body).status_code == 202
    if path == "per event":
        _process_per_event(kapp)
    else:
        burst(kapp)  # the worker's drain: kajabi_batch on PostgreSQL
    first, second, third = events(kapp)
    assert [e.result_code for e in (first, second, third)] == ["awarded", "duplicate_event", "duplicate_event"]
    assert first.ledger_id == second.ledger_id == third.ledger_id
    with kapp.app_context():
        assert ledger.user_totals(first.user_id)["total"] == 10  # not 20: the cap would have allowed it
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 1


def test_third_learn_tag_is_capped_and_starter_badge_awarded(kapp):
    client = kapp.test_client()
    for n in (1, 2, 3):
        assert post(client, documented(f"evt-{n}", tag=f"elevate-ai-{n}-completed")).status_code == 202
    burst(kapp)
    codes = [e.result_code for e in events(kapp)]
    assert codes == ["awarded", "awarded", "cap_reached"]
    with kapp.app_context():
        uid = events(kapp)[0].user_id
        assert ledger.user_totals(uid)["total"] == 20
        assert ledger.user_facts(uid).badges_held == frozenset({"STARTER"})


def test_unknown_email_waits_then_is_reconciled_when_the_user_is_created(kapp):
    client = kapp.test_client()
    assert post(client, documented(email="newcomer@example.com", contact="c-200")).status_code == 202
    burst(kapp)
    [event] = events(kapp)
    assert event.state == "queued_unmatched" and event.result_code == "unmatched_contact"
    with kapp.app_context():
        create_user("NEWCOMER@example.com", "uploader")  # enqueues a reconcile after commit
        db.session.commit()
    burst(kapp)
    [event] = events(kapp)
    assert event.state == "ledgered" and event.result_code == "awarded"
    with kapp.app_context():
        from core.platform.models import User
        user = db.session.scalar(select(User).where(User.email == "newcomer@example.com"))
        assert user.kajabi_contact_id == "c-200"  # bound on the first e-mail match


def test_reconcile_only_retries_events_a_user_now_matches(kapp):
    client = kapp.test_client()
    for n in range(25):  # people who bought a course and never signed up
        assert post(client, documented(f"evt-{n}", email=f"stranger{n}@example.com", contact=f"c-{n}")).status_code == 202
    burst(kapp)
    assert {e.state for e in events(kapp)} == {"queued_unmatched"}
    with kapp.app_context():
        assert kajabi.reconcile_candidates() == []  # nothing can have changed: no processing at all
        assert kajabi.reconcile() == {}
        create_user("Stranger7@Example.com", "uploader")
        db.session.commit()
        [candidate] = kajabi.reconcile_candidates()
        assert kajabi.reconcile() == {"ledgered": 1}
    assert [e.event_id for e in events(kapp) if e.state == "ledgered"] == ["evt-7"]


def test_flat_form_unknown_tag_and_tag_removed(kapp):
    client = kapp.test_client()
    flat = {"event_id": "flat-1", "created_at": "2024-05-01T10:00:00Z",
            "contact": {"id": "c-100", "email": "known@example.com"}, "tag": {"id": "t9", "name": "ELEVATE-AI-2-completed"}}
    assert post(client, flat).status_code == 202
    assert post(client, {**flat, "event_id": "flat-2", "tag": {"name": "some-other-course"}}).status_code == 202
    assert post(client, {**flat, "event_id": "flat-3", "event": "tag_removed"}).status_code == 202
    assert post(client, documented("doc-x", event="contact_created")).status_code == 202
    burst(kapp)
    states = [(e.state, e.result_code) for e in events(kapp)]
    assert states == [("ledgered", "awarded"), ("ignored", "unknown_tag"), ("recorded", "tag_removed"),
                      ("ignored", "unsupported_event")]
    with kapp.app_context():
        entry = ledger.find("kajabi", "kajabi:tag:c-100:elevate-ai-2-completed")
        assert entry.event_time.isoformat().startswith("2024-05-01T10:00:00")
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 1
        # A mapping added later: reconcile picks up the ignored event.
        db.session.add(ActivityTag(tag="some-other-course", activity_code="LEARN"))
        kajabi.reconcile_soon()
        db.session.commit()
    burst(kapp)
    assert events(kapp)[1].state == "ledgered"


def test_wrong_or_missing_secret_writes_nothing(kapp):
    client = kapp.test_client()
    envelope(post(client, documented(), token="wrong"), 403, "invalid_secret")
    envelope(post(client, documented(), token=None), 403, "invalid_secret")
    body = json.dumps(documented()).encode()
    bad_sig = client.post(URL, data=body, content_type="application/json",
                          headers={"X-Kajabi-Signature": hmac.new(b"nope", body, hashlib.sha256).hexdigest()})
    envelope(bad_sig, 403, "invalid_secret")
    envelope(client.post(URL, data=body, content_type="application/json", headers={"X-Webhook-Secret": "nope"}),
             403, "invalid_secret")
    with kapp.app_context():
        assert db.session.scalar(select(func.count()).select_from(KajabiEvent)) == 0
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 0
    queued = [job.func_name for job in kapp.extensions["points"].queues["ledger"].jobs]
    assert "jobs.kajabi.process_event" not in queued  # only the fixture's user-created reconcile


@pytest.mark.parametrize("variant", ["token", "header", "signature", "signature_prefixed"])
def test_every_secret_variant_is_accepted(kapp, variant):
    client = kapp.test_client()
    body = json.dumps(documented(f"evt-{variant}")).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    url, headers = URL, {}
    if variant == "token":
        url = f"{URL}?token={SECRET}"
    elif variant == "header":
        headers["X-Webhook-Secret"] = SECRET
    elif variant == "signature":
        headers["X-Kajabi-Signature"] = digest
    else:
        headers["X-Kajabi-Signature"] = "sha256=" + digest.upper()
    response = client.post(url, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 202, response.get_json()


def test_oversized_bad_json_and_unconfigured(kapp, make_app):
    client = kapp.test_client()
    big = documented()
    big["padding"] = "x" * (64 * 1024)
    envelope(post(client, big), 413, "payload_too_large")
    envelope(client.post(f"{URL}?token={SECRET}", data=b"{not json", content_type="application/json"), 400, "invalid_json")
    envelope(post(client, ["a", "list"]), 400, "invalid_payload")
    with kapp.app_context():
        assert db.session.scalar(select(func.count()).select_from(KajabiEvent)) == 0
    unconfigured = make_app().test_client()  # no KAJABI_WEBHOOK_SECRET: everything refused
    body = envelope(post(unconfigured, documented(), token=""), 503, "not_configured")
    assert body["type"] == "unavailable"


def test_chunked_body_without_length_is_still_limited(kapp):
    with serve(kapp) as base:
        def chunks():
            for _ in range(70):
                yield b"x" * 1024
        response = requests.post(f"{base}{URL}?token={SECRET}", data=chunks(), headers={"Content-Type": "application/json"},
                                 timeout=10)
        assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
        ok = requests.post(f"{base}{URL}?token={SECRET}", data=iter([json.dumps(documented("chunked-1")).encode()]),
                           headers={"Content-Type": "application/json"}, timeout=10)
        assert ok.status_code == 202


def test_anonymise_raw_is_idempotent_and_keeps_a_keyed_hash(kapp):
    client = kapp.test_client()
    post(client, documented("old-1", email="Person@Example.com"))
    post(client, documented("new-1"))
    with kapp.app_context():
        old = db.session.scalar(select(KajabiEvent).where(KajabiEvent.event_id == "old-1"))
        old.received_at = utcnow() - timedelta(days=400)
        db.session.commit()
        cutoff = utcnow() - timedelta(days=365)
        assert kajabi.anonymise_raw(cutoff) == 1
        assert kajabi.anonymise_raw(cutoff) == 0
        old = db.session.scalar(select(KajabiEvent).where(KajabiEvent.event_id == "old-1"))
        assert old.email is None and "person@example.com" not in json.dumps(old.payload).lower()
        assert "Known Person" not in json.dumps(old.payload)
        key = kajabi.email_hash_key(kapp.config["SECRET_KEY"])
        assert old.email_hash == kajabi.hash_email("person@example.com", key) != hashlib.sha256(b"person@example.com").hexdigest()
        new = db.session.scalar(select(KajabiEvent).where(KajabiEvent.event_id == "new-1"))
        assert new.email == "known@example.com" and new.anonymised_at is None


def test_the_webhook_neither_reads_nor_writes_a_session_cookie(kapp):
    """A machine's hook gets no browser session (core.platform.web.SESSIONLESS_PREFIXES): a cookie
    sent along is not verified, and the answer neither sets one nor varies on it."""
    client = kapp.test_client()
    client.set_cookie("session", "not-a-signed-session")
    response = post(client, documented("evt-no-session"))
    assert response.status_code == 202
    assert "Set-Cookie" not in response.headers
    assert "cookie" not in {v.lower() for v in response.vary}
    page = client.get("/login")  # the portal still has its session
    assert page.status_code == 200 and "cookie" in {v.lower() for v in page.vary}


def test_the_raw_row_keeps_the_body_as_kajabi_sent_it(kapp):
    """PostgreSQL's `json` column keeps text as given, and the hook stores the body's own bytes
    (validated, not re-serialised): spacing, key order and non-ASCII letters as sent."""
    from sqlalchemy import text

    raw = ('{"id":"evt-raw", "event" : "tag_added","payload":[{"type":"contacts","id":"c-100",'
           '"attributes":{"email":"known@example.com","name":"Zoë Ångström"}},'
           '{"type":"contact_tags","id":"t-1","attributes":{"name":"elevate-ai-1-completed"}}]}')
    response = kapp.test_client().post(f"{URL}?token={SECRET}", data=raw.encode(), content_type="application/json")
    assert response.status_code == 202
    with kapp.app_context():
        stored = db.session.scalar(text("SELECT payload::text FROM kajabi_events WHERE event_id = 'evt-raw'"))
        [event] = [e for e in events(kapp) if e.event_id == "evt-raw"]
    assert stored == raw
    assert event.payload == json.loads(raw)
