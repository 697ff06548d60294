"""The drain's batch path (core.points.kajabi_batch, ledger_batch.record_many: constant SQL texts,
one array per column) writes exactly what the per-event path (kajabi.process -> ledger.record)
writes, on the same stored hooks: events, ledger rows, outbox records, badges, contact binds,
audit events and the per-state counts. Real PostgreSQL + Redis."""
from __future__ import annotations

from sqlalchemy import Text, cast, delete, select, update

from core.accounts.users import create_user
from core.platform.db import db
from core.platform.models import (AuditEvent, KajabiEvent, KajabiStateCount, LedgerEntry, OutboxRecord, User,
                                  UserBadge)
from core.points import kajabi, kajabi_batch
from tests.test_kajabi import NO_CONTACT_ID, documented, kapp, post  # noqa: F401 (kapp is a fixture)

# In id order. known@example.com has no contact id yet; u2 has c-2; Mixed@Example.com is stored
# with capitals (an account older than e-mail normalising), so only the case-insensitive look-up finds it.
HOOKS = [
    documented("k1", tag="elevate-ai-1-completed"),                      # awarded; binds c-100 to known
    documented("k2", tag="elevate-ai-1-completed"),                      # same grant id in the same batch: duplicate
    documented("k3", contact="c-200", tag="elevate-ai-2-completed"),     # second contact, same e-mail: awarded + STARTER
    documented("k4", tag="elevate-ai-3-completed"),                      # the cap (20) crossed inside the batch: cap_reached
    documented("k5", contact="c-200", tag="elevate-ai-3-completed"),     # that tag again from the other contact: duplicate
    documented("u2-1", email="u2@example.com", contact="c-2", tag="elevate-ai-2-completed"),
    {"event_id": "u4-1", "contact": {"email": "u4@example.com"}, "tag": {"name": "elevate-ai-1-completed"}},
    documented("u4-2", email="u4@example.com", contact="c-4", tag="elevate-ai-1-completed"),  # one grant per tag per user
    documented("u2-2", email="u2@example.com", contact="c-2", tag="elevate-ai-1-completed"),  # STARTER for u2
    documented("m1", email="mixed@example.com", contact="c-m", tag="elevate-ai-1-completed"),  # found by lower(email)
    documented("x1", tag="unknown-course"),
    documented("x2", email="nobody@example.com", contact="c-999"),
    documented("x3", event="tag_removed"),
    documented("x4", event="contact_created"),
    NO_CONTACT_ID,                                                       # known's ai-1 once more, no contact id
]


def _seed(app) -> None:
    with app.app_context():
        create_user("u2@example.com", "uploader")
        create_user("u4@example.com", "uploader")
        create_user("mixed@example.com", "uploader")
        db.session.execute(update(User).where(User.email == "u2@example.com").values(kajabi_contact_id="c-2"))
        db.session.execute(update(User).where(User.email == "mixed@example.com").values(email="Mixed@Example.com"))
        db.session.commit()
    client = app.test_client()
    for body in HOOKS:
        assert post(client, body).status_code == 202


def _snapshot(app) -> dict:
    """Everything the drain writes, with ids and clock readings replaced by what they stand for."""
    with app.app_context():
        users = {u.id: u.email for u in db.session.scalars(select(User))}
        entries = db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.id)).all()
        key = {e.id: e.external_event_id for e in entries}
        rows = db.session.scalars(select(KajabiEvent).order_by(KajabiEvent.id)).all()
        snap = {
            "events": [(e.event_id, e.state, e.result_code, users.get(e.user_id), key.get(e.ledger_id),
                        e.ledgered_at is not None, e.processed_at is not None, e.matchable_at, e.error) for e in rows],
            "ledger": [(users[e.user_id], e.activity_code, e.delta_points, e.code, e.external_source, e.external_event_id,
                        e.event_time, e.session_date, e.counters, e.reverses_id, e.meta) for e in entries],
            "outbox": [(o.topic, o.idempotency_key, key[o.ledger_id], o.status, o.attempts,
                        {**o.payload, "ledger_id": key[o.payload["ledger_id"]],
                         **({"user_id": users[o.payload["user_id"]]})})
                       for o in db.session.scalars(select(OutboxRecord).order_by(OutboxRecord.id))],
            "badges": sorted((users[b.user_id], b.badge_code, key[b.ledger_id]) for b in db.session.scalars(select(UserBadge))),
            "contacts": sorted((u.email, u.kajabi_contact_id) for u in db.session.scalars(select(User))),
            "audit": [(a.action, a.subject_type, a.subject_id, {**a.details, "user_id": users.get(a.details.get("user_id"))})
                      for a in db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("kajabi.%"))
                                                  .order_by(AuditEvent.id))],
            # As stored: PostgreSQL's json keeps the text it was given.
            "json_text": db.session.execute(select(cast(LedgerEntry.meta, Text), cast(LedgerEntry.counters, Text))
                                            .order_by(LedgerEntry.id)).all(),
            "states": dict(db.session.execute(select(KajabiStateCount.state, KajabiStateCount.n)).all()),
        }
        db.session.rollback()
        return snap


def _reset(app, contacts: list[tuple[str, str | None]]) -> None:
    """Back to the stored hooks, as received, with the users' contact ids as they were."""
    with app.app_context():
        for model in (OutboxRecord, UserBadge, LedgerEntry, KajabiStateCount):
            db.session.execute(delete(model))
        db.session.execute(delete(AuditEvent).where(AuditEvent.action.like("kajabi.%")))
        db.session.execute(update(KajabiEvent).values(state="received", result_code=None, user_id=None, ledger_id=None,
                                                      processed_at=None, ledgered_at=None, matchable_at=None, error=None))
        for email, contact in contacts:
            db.session.execute(update(User).where(User.email == email).values(kajabi_contact_id=contact))
        db.session.commit()


def _per_event(app) -> None:
    with app.app_context():
        for row_id in kajabi.next_received():
            assert kajabi.process_and_commit(row_id, {})


def _batches(app, size: int) -> None:
    with app.app_context():
        while claimed := kajabi_batch.claim(size):
            kajabi_batch.process_batch(claimed)
            db.session.commit()


def test_the_batch_path_writes_what_the_per_event_path_writes(kapp):
    _seed(kapp)
    before = _snapshot(kapp)["contacts"]
    _per_event(kapp)
    expected = _snapshot(kapp)
    # The input covers what the batch must get right: duplicates inside a batch, the cap crossed
    # inside a batch, badges, binds, the case-insensitive match, one grant per tag per user.
    assert [(e[0], e[2]) for e in expected["events"]] == [
        ("k1", "awarded"), ("k2", "duplicate_event"), ("k3", "awarded"), ("k4", "cap_reached"),
        ("k5", "duplicate_event"), ("u2-1", "awarded"), ("u4-1", "awarded"), ("u4-2", "duplicate_event"),
        ("u2-2", "awarded"), ("m1", "awarded"), ("x1", "unknown_tag"), ("x2", "unmatched_contact"),
        ("x3", "tag_removed"), ("x4", "unsupported_event"), ("flat-1", "duplicate_event")]
    assert len(expected["badges"]) == 2 and ("Mixed@Example.com", "c-m") in expected["contacts"]
    for size in (100, 3, 1):  # one batch; batches that split the duplicates and the cap; one event each
        _reset(kapp, before)
        _batches(kapp, size)
        assert _snapshot(kapp) == expected, f"batches of {size}"
