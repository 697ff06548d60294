"""Kajabi tags -> ledger: verify the hook's secret, turn a body the door has validated (against
either documented form: api.schemas.kajabi) into its stored form, store the raw event once, then
(in a job) match contact -> user and tag -> activity and call ledger.record.

Event states: received -> ledgered (result_code: the ledger's code, `awarded`, `cap_reached` or
`duplicate_event`) | queued_unmatched (`unmatched_contact`, retried by reconcile) | ignored
(`unknown_tag` — retried by reconcile too, since a mapping may be added later —,
`unsupported_event`, or `needs_session_date`: the tag maps to an activity whose cap counts by session
date, which a tag does not carry; the admin pages refuse such a mapping, this covers one made in SQL) | recorded (tag_removed: kept for audit, no points).
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, or_, select, update

from core.platform import audit
from core.points import latency_hist, ledger, rules  # noqa: F401 - latency_hist counts process()'s writes (after_flush)
from core.platform.db import db, is_postgres, utcnow
from core.platform.errors import AuthError, Conflict, Unavailable
from core.platform.models import ActivityTag, KajabiEvent, User
from core.platform.queues import enqueue_after_commit, enqueue_committed, rq_timeout_in
from core.accounts.users import normalise_email, user_created
from core.platform.services import services

log = logging.getLogger("kajabi")

MAX_BODY_BYTES = 64 * 1024
TAG_ADDED, TAG_REMOVED = "tag_added", "tag_removed"


# --- verification -------------------------------------------------------------------------------

def verify(secret: str, raw_body: bytes, token: str | None, header_secret: str | None, signature: str | None) -> None:
    """Raise unless one of the three accepted forms carries the secret. Constant-time throughout."""
    if not secret:
        raise Unavailable("not_configured", "Kajabi webhooks are not configured on this server.")
    expected = secret.encode()
    ok = False
    # Each form is compared even after a match, so timing does not reveal which one was used.
    ok |= token is not None and hmac.compare_digest(token.encode(), expected)
    ok |= header_secret is not None and hmac.compare_digest(header_secret.encode(), expected)
    if signature is not None:
        digest = hmac.new(expected, raw_body, hashlib.sha256).hexdigest()
        ok |= hmac.compare_digest(signature.strip().lower().removeprefix("sha256=").encode(), digest.encode())
    if not ok:
        raise AuthError("invalid_secret", "The webhook secret is missing or wrong.")


# --- parsing ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParsedEvent:
    event_id: str
    event_type: str
    contact_id: str | None
    email: str | None
    tag: str | None
    created_at: datetime | None


def _parse_time(value) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None
    # A date out of range (stored before the door refused it) counts as absent: the receive time is used.
    return parsed if rules.event_time_ok(parsed, utcnow()) else None


def _text(value) -> str | None:
    return None if value is None or value == "" else str(value).strip() or None


def parsed_event(event_id, event_type: str, contact_id, email: str | None, tag_name: str | None,
                 created_at: str | None, raw_body: bytes) -> ParsedEvent:
    """The stored form of a hook whose body the door has already validated against one of the two
    documented shapes (api.schemas.kajabi): ids as text (ints accepted), e-mail normalised (core.accounts.users.normalise_email: NFC, trimmed, casefolded), tag
    trimmed and lower-cased (rules.normalise_tag). No event id: the body itself identifies the
    event (`body:<sha256 of the raw bytes>`), so a resend is still a duplicate."""
    event_id = _text(event_id) or "body:" + hashlib.sha256(raw_body).hexdigest()
    email = _text(email)
    return ParsedEvent(event_id, event_type.strip(), _text(contact_id), normalise_email(email) or None,
                       rules.normalise_tag(tag_name) or None, _parse_time(created_at))


# --- storing (the webhook's transaction) --------------------------------------------------------

_STORE_KEYS = ("event_id", "event_type", "payload", "contact_id", "email", "tag", "state", "received_at")


@functools.cache
def _store_statement(postgres: bool):
    from sqlalchemy.dialects import postgresql, sqlite

    table = KajabiEvent.__table__
    insert = postgresql.insert if postgres else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=[table.c.event_id]).returning(table.c.id)


@functools.cache
def _store_sql(dialect) -> str:
    # The Core statement's own SQL (no hand-written copy): psycopg's %(name)s placeholders.
    return str(_store_statement(True).compile(dialect=dialect, column_keys=list(_STORE_KEYS)))


def store(parsed: ParsedEvent, body: dict, raw_body: bytes) -> tuple[int | None, bool]:
    """(row id, created), committed. The unique event_id makes a resent hook a duplicate, stored
    once: one INSERT ... ON CONFLICT DO NOTHING RETURNING decides it in one round trip. The
    payload column (PostgreSQL `json`, which keeps text as given) gets the body's own bytes, which
    the door has validated as UTF-8 JSON of storable strings; SQLite gets `body` re-serialised.

    The hot path of ingest, so it is one statement compiled once, in autocommit (no BEGIN and
    COMMIT), without an ORM session; on PostgreSQL on the pooled psycopg connection itself."""
    values = dict(event_id=parsed.event_id, event_type=parsed.event_type, payload=body, contact_id=parsed.contact_id,
                  email=parsed.email, tag=parsed.tag, state="received", received_at=utcnow())
    if is_postgres():
        values["payload"] = raw_body.decode("utf-8")
        row_id = _store_on_driver(values)
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            row_id = conn.execute(_store_statement(False), values).scalar()
    return row_id, row_id is not None


def _store_on_driver(values: dict) -> int | None:
    """The INSERT on a pooled psycopg connection, past SQLAlchemy's Connection: its set-up, the
    isolation switch and back, and the result's wrapping were about a third of the store's CPU.
    The pool still checks the connection out and in (core.platform.db.drop_dead_on_checkout), and
    a driver error is raised as SQLAlchemy's (a lost connection invalidated), so the 503 handlers
    in api/errors.py answer as they do for any statement."""
    from sqlalchemy.exc import DBAPIError

    dialect = db.engine.dialect
    sql = _store_sql(dialect)
    try:
        pooled = db.engine.raw_connection()
    except dialect.loaded_dbapi.Error as exc:  # no server: what Engine.connect raises
        raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc
    conn = pooled.driver_connection
    try:
        conn.autocommit = True  # a client-side flag: costs no round trip
        try:
            row = conn.execute(sql, values).fetchone()
        finally:
            conn.autocommit = False  # the pool's connections are transactional
        return row[0] if row else None
    except dialect.loaded_dbapi.Error as exc:
        gone = dialect.is_disconnect(exc, conn, None) or conn.closed
        if gone:
            pooled.invalidate(exc)
        raise DBAPIError.instance(sql, values, exc, dialect.loaded_dbapi.Error, connection_invalidated=gone,
                                  dialect=dialect) from exc
    finally:
        pooled.close()


# --- processing (a job) -------------------------------------------------------------------------

def match_user(contact_id: str | None, email: str | None) -> User | None:
    """By Kajabi contact id, then e-mail (normalise_email's spelling: NFC, casefolded); binds the
    contact id on first match."""
    if contact_id:
        user = db.session.scalar(select(User).where(User.kajabi_contact_id == contact_id))
        if user is not None:
            return user
    if not email:
        return None
    user = db.session.scalar(select(User).where(func.lower(User.email) == normalise_email(email)))
    if user is not None and contact_id and user.kajabi_contact_id is None:
        # Conditional, so a drain that read the user before another drain's binding committed
        # cannot overwrite it (the first e-mail match binds); then re-read what was kept.
        db.session.execute(update(User).where(User.id == user.id, User.kajabi_contact_id.is_(None))
                           .values(kajabi_contact_id=contact_id, updated_at=utcnow())
                           .execution_options(synchronize_session=False))
        db.session.refresh(user, ["kajabi_contact_id"])
    return user


def grant_event_id(user_id: int, bound_contact: str | None, event_contact: str | None, tag: str) -> str:
    """The ledger event id of a tag grant. Keyed on the contact id bound to the user (match_user
    binds the first one seen), not the hook's own, so a hook from a second contact with the same
    e-mail is the same event. The ledger itself also refuses a second Kajabi grant of one tag to
    one user (ledger.tag_grant), which covers a grant recorded before any contact was bound."""
    contact = bound_contact or event_contact or f"user-{user_id}"
    return f"kajabi:tag:{contact}:{tag}"


def _finish(event: KajabiEvent, state: str, result_code: str | None, *, user_id: int | None = None) -> None:
    event.state = state
    event.result_code = result_code
    event.user_id = user_id if user_id is not None else event.user_id
    event.processed_at = utcnow()
    event.error = None


PROCESS_KICK = "kajabi-process"
STALE_RECEIVED_S = 60


def next_received(limit: int = 200) -> list[int]:
    """Oldest events still waiting for processing (the drain of jobs.kajabi.process_event)."""
    return list(db.session.scalars(select(KajabiEvent.id).where(KajabiEvent.state == "received")
                                   .order_by(KajabiEvent.id).limit(limit)))


def process(event_row_id: int, *, skip_locked: bool = False) -> str | None:
    """Process one stored event in the caller's transaction. Returns the new state, or None when
    the event is already final (a retried job finds nothing to do) or, with skip_locked, when
    another worker is processing it right now."""
    query = select(KajabiEvent).where(KajabiEvent.id == event_row_id).with_for_update(skip_locked=skip_locked)
    event = db.session.scalar(query)
    if event is None:
        if skip_locked:
            return None
        raise LookupError(f"kajabi event {event_row_id} does not exist")
    if event.state not in ("received", "queued_unmatched") and not (event.state == "ignored" and event.result_code == "unknown_tag"):
        return None
    if event.event_type not in (TAG_ADDED, TAG_REMOVED):
        _finish(event, "ignored", "unsupported_event")
        return event.state
    user = match_user(event.contact_id, event.email)
    if event.event_type == TAG_REMOVED:
        # Kept for audit; a grant is one-off and is not taken back by Kajabi removing the tag.
        _finish(event, "recorded", "tag_removed", user_id=user.id if user else None)
        audit.record("kajabi.tag_removed", "kajabi_event", event.id, tag=event.tag, user_id=user.id if user else None)
        return event.state
    if user is None:
        _finish(event, "queued_unmatched", "unmatched_contact")
        return event.state
    mapping = db.session.get(ActivityTag, event.tag) if event.tag else None
    if mapping is None:
        _finish(event, "ignored", "unknown_tag", user_id=user.id)
        return event.state
    if ledger.activity_spec(mapping.activity_code).cap_period in ledger.SESSION_DATE_PERIODS:
        _finish(event, "ignored", "needs_session_date", user_id=user.id)
        return event.state
    event_id = grant_event_id(user.id, user.kajabi_contact_id, event.contact_id, event.tag)
    try:
        result = ledger.record(user.id, mapping.activity_code, ledger.KAJABI_SOURCE, event_id,
                               _event_time(event), tag=event.tag,
                               meta={"kajabi_event_id": event.event_id, "kajabi_event_row": event.id})
        event.ledger_id, code = result.entry.id, result.code
    except Conflict as exc:
        if exc.code != "duplicate_event":
            raise
        existing = ledger.find(ledger.KAJABI_SOURCE, event_id)
        event.ledger_id = existing.id if existing else ledger.tag_grant(user.id, event.tag)
        code = "duplicate_event"
    _finish(event, "ledgered", code, user_id=user.id)
    event.ledgered_at = utcnow()
    event.matchable_at = matchable_at(event.received_at, user.created_at, mapping.created_at)
    return event.state


def matchable_at(received_at: datetime | None, *created: datetime | None) -> datetime | None:
    """When an event could first be matched: its arrival, or the creation of the user or the tag
    mapping that matched it, whichever is latest (the SLO's tag -> ledger latency counts from
    here; time waiting for a sign-up is the unmatched alert's, docs/operations.md)."""
    moments = [m for m in (received_at, *created) if m is not None]
    return max(moments) if moments else None


def _event_time(event: KajabiEvent) -> datetime:
    created = _parse_time(event.payload.get("created_at")) if isinstance(event.payload, dict) else None
    return created or event.received_at or utcnow()


def reconcile_candidates() -> list[int]:
    """Unmatched contacts that a user now matches (by contact id or e-mail), unknown tags that
    have a mapping now, and events left received for over a minute. Only events whose outcome can
    have changed are picked, so an unmatched backlog (people who never sign up, or anonymised
    events without an e-mail) costs one query per run, not one processing attempt per event."""
    stale = utcnow() - timedelta(seconds=STALE_RECEIVED_S)
    return list(db.session.scalars(
        select(KajabiEvent.id).where(or_(
            (KajabiEvent.state == "queued_unmatched")
            & or_(KajabiEvent.contact_id.in_(select(User.kajabi_contact_id).where(User.kajabi_contact_id.is_not(None))),
                  func.lower(KajabiEvent.email).in_(select(func.lower(User.email)))),
            # A safety net: received but never processed (Redis was down when it was queued).
            (KajabiEvent.state == "received") & (KajabiEvent.received_at < stale),
            (KajabiEvent.state == "ignored") & (KajabiEvent.result_code == "unknown_tag")
            & KajabiEvent.tag.in_(select(ActivityTag.tag))))
        .order_by(KajabiEvent.id)))


def reconcile(progress=None) -> dict[str, int]:
    """Retry unmatched contacts and newly mapped tags; commits per event so one bad row cannot
    block the rest. Returns counts by resulting state."""
    ids = reconcile_candidates()
    db.session.commit()
    counts: dict[str, int] = {}
    for event_row_id in ids:
        process_and_commit(event_row_id, counts, unchanged="unchanged")
        if progress:
            progress(1)
    return counts


def process_and_commit(event_row_id: int, counts: dict[str, int], *, skip_locked: bool = False,
                       unchanged: str = "skipped") -> bool:
    """Process one event in its own transaction, so one bad event cannot block the rest; counts
    the resulting state ("failed" on an exception, which is logged). Returns False on failure."""
    try:
        state = process(event_row_id, skip_locked=skip_locked) or unchanged
        db.session.commit()
    except Exception as exc:
        timeout = rq_timeout_in(exc)
        if timeout is not None:
            raise timeout from None  # RQ is stopping the job; its context releases the busy connection
        db.session.rollback()
        log.exception("kajabi event failed", extra={"kajabi_event_row": event_row_id})
        state = "failed"
    counts[state] = counts.get(state, 0) + 1
    return state != "failed"


# A hook whose process found the drain's once-marker set less than this long ago asks Redis
# nothing (a round trip, about a tenth of a hook's CPU). Safe on PostgreSQL because the marker
# meant a drain queued and not yet started, and a drain, once started, ends only after an idle
# spell of jobs.kajabi.IDLE_GRACE_S (0.3 s) or past its budget, when it looks for events left
# (_next_slice): either way its last read comes after this hook's commit. The test
# test_kajabi_kicks.py::test_kick_reuse_stays_inside_the_drains_idle_grace keeps the two apart.
KICK_REUSE_S = 0.1


def kick_drain(event_row_id: int) -> None:
    """Called by the webhook once the event is committed: make sure a drain will claim it.

    A hook asks Redis (one SET NX, core.platform.queues): either it queues a drain, or one is
    queued that has not started yet, and a drain clears the marker before its first read, so that
    drain reads after this event's commit and claims it. On PostgreSQL a hook within KICK_REUSE_S
    of its process's last answer trusts that answer. Not on SQLite, where a drain reads once and
    may already have read past the event (it would stay `received` until the next hook came)."""
    enqueue_committed("ledger", "jobs.kajabi.process_event", event_row_id, once=PROCESS_KICK,
                      trust_marker_s=KICK_REUSE_S if is_postgres() else 0.0)


RECONCILE_KICK = "kajabi-reconcile"


def reconcile_soon() -> None:
    """Call when users, contact ids or tag mappings change: reconcile runs after the commit
    (one pending run for a burst of changes; see core.platform.queues.enqueue_after_commit)."""
    enqueue_after_commit("ledger", "jobs.kajabi.reconcile", once=RECONCILE_KICK)


@user_created.connect
def _reconcile_for_new_user(user, **_) -> None:
    reconcile_soon()  # a new e-mail can match a waiting event; queued after the caller's commit


# --- retention ----------------------------------------------------------------------------------

def email_hash_key(secret_key: str) -> bytes:
    # A key derived for this purpose only, so the hash does not expose the session secret's uses.
    return hmac.new(secret_key.encode(), b"points/kajabi-email-hash/v1", hashlib.sha256).digest()


def hash_email(email: str, key: bytes) -> str:
    return hmac.new(key, email.strip().lower().encode(), hashlib.sha256).hexdigest()


def anonymise_raw(cutoff: datetime, batch_size: int = 1000) -> int:
    """Strip personal fields from raw payloads received before `cutoff`, keeping a keyed hash of the
    e-mail (still joinable, not readable). Idempotent: anonymised rows are skipped. Commits."""
    key = email_hash_key(services().settings.secret_key)
    total = 0
    while True:
        events = db.session.scalars(select(KajabiEvent).where(KajabiEvent.received_at < cutoff,
                                                              KajabiEvent.anonymised_at.is_(None))
                                    .order_by(KajabiEvent.id).limit(batch_size)).all()
        if not events:
            break
        for event in events:
            if event.email:
                event.email_hash = hash_email(event.email, key)
            event.email = None
            event.payload = {"anonymised": True, "event": event.event_type, "tag": event.tag,
                             "contact_id": event.contact_id}
            event.anonymised_at = utcnow()
        total += len(events)
        db.session.commit()
    return total
