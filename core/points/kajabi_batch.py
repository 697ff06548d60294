"""The Kajabi drain's fast path: claim a batch of received events and process them in ONE
transaction with a fixed number of statements (PostgreSQL only).

Same outcomes as core.points.kajabi.process, event by event in id order: contact -> user (by contact id,
then e-mail, binding the contact id on the first e-mail match), tag -> activity, then
core.points.ledger_batch.record_many (record()'s locks, caps, duplicates, badges, outbox rows and log lines).
Claiming with `FOR UPDATE SKIP LOCKED` lets any number of workers drain one backlog without ever
taking the same event; a worker that dies mid-batch rolls back and its events stay `received`.
Any error raises, and the caller rolls back and falls back to the per-event path, so one bad
event cannot block the rest.
"""
from __future__ import annotations

from sqlalchemy import select

from core.platform import audit
from core.points import latency_hist, ledger, ledger_batch
from core.platform.db import as_utc, db, utcnow
from core.points.kajabi import TAG_ADDED, TAG_REMOVED, _parse_time, grant_event_id, matchable_at
from core.platform.models import KajabiEvent
from core.points.ledger_batch import run

BATCH_SIZE = 100

# Constant texts with one binary array per column, as in core.points.ledger_batch (see there).
_USERS = ("SELECT id, email, kajabi_contact_id, created_at FROM users "
          "WHERE kajabi_contact_id = ANY(%(contacts)b::text[]) OR email = ANY(%(emails)b::text[])")
_USERS_LOWER = ("SELECT id, email, kajabi_contact_id, created_at FROM users WHERE lower(email) = ANY(%(emails)b::text[]) "
                "ORDER BY id")
_TAGS = ("SELECT t.tag, t.activity_code, t.created_at, a.cap_period FROM activity_tags AS t "
         "JOIN activities AS a ON a.code = t.activity_code WHERE t.tag = ANY(%(tags)b::text[])")
_BIND = ("UPDATE users SET kajabi_contact_id = b.contact, updated_at = %(now)s "
         "FROM unnest(%(uids)b::bigint[], %(contacts)b::text[]) AS b(uid, contact) "
         # A drain that read the user before another drain's binding committed must not overwrite it.
         "WHERE users.id = b.uid AND users.kajabi_contact_id IS NULL")
_FINISH = ("UPDATE kajabi_events AS k SET state = f.state, result_code = f.code, user_id = f.uid, processed_at = %(stamp)s, "
           "error = NULL, ledger_id = f.lid, ledgered_at = f.ledgered, matchable_at = f.matchable "
           "FROM unnest(%(ids)b::bigint[], %(states)b::text[], %(codes)b::text[], %(uids)b::bigint[], %(lids)b::bigint[], "
           "%(ledgered)b::timestamptz[], %(matchable)b::timestamptz[]) AS f(id, state, code, uid, lid, ledgered, matchable) "
           "WHERE k.id = f.id")

_COLUMNS = (KajabiEvent.id, KajabiEvent.event_id, KajabiEvent.event_type, KajabiEvent.payload, KajabiEvent.contact_id,
            KajabiEvent.email, KajabiEvent.tag, KajabiEvent.user_id, KajabiEvent.received_at)


def claim(limit: int = BATCH_SIZE, exclude: set[int] | frozenset = frozenset()) -> list:
    """Oldest received events nobody else holds, locked until the caller's commit."""
    query = select(*_COLUMNS).where(KajabiEvent.state == "received")
    if exclude:
        query = query.where(KajabiEvent.id.not_in(exclude))
    return list(db.session.execute(query.order_by(KajabiEvent.id).limit(limit).with_for_update(skip_locked=True)))


class _User:
    __slots__ = ("id", "email", "contact_id", "created_at")

    def __init__(self, id_, email, contact_id, created_at=None):
        self.id, self.email, self.contact_id, self.created_at = id_, email, contact_id, created_at


def _load_users(events) -> tuple[dict[str, _User], dict[str, _User]]:
    contacts = {e.contact_id for e in events if e.contact_id}
    emails = {e.email.lower() for e in events if e.email}
    by_contact: dict[str, _User] = {}
    by_email: dict[str, _User] = {}
    if not contacts and not emails:
        return by_contact, by_email

    users: dict[int, _User] = {}

    def add(rows):
        for uid, email, contact, created in rows:
            user = users.setdefault(uid, _User(uid, email, contact, as_utc(created)))
            if contact:
                by_contact.setdefault(contact, user)
            if email:
                by_email.setdefault(email.lower(), user)

    # Exact e-mail first (unique index; e-mails are stored lower-cased) ...
    add(run(_USERS, {"contacts": sorted(contacts), "emails": sorted(emails)}))
    missing = emails - set(by_email)
    if missing:  # ... then case-insensitive, as match_user does, only for the rest
        add(run(_USERS_LOWER, {"emails": sorted(missing)}))
    return by_contact, by_email


def process_batch(events) -> dict[str, int]:
    """Process claimed rows (from claim) in the caller's transaction; returns counts by state."""
    by_contact, by_email = _load_users(events)
    tags = sorted({e.tag for e in events if e.tag})
    rows = run(_TAGS, {"tags": tags}).all() if tags else []
    mapping = {tag: code for tag, code, _, _ in rows}
    mapped_at = {tag: as_utc(created) for tag, _, created, _ in rows}
    dated = {tag for tag, _, _, period in rows if period in ledger.SESSION_DATE_PERIODS}
    now = utcnow()
    updates, grants, binds, counts = [], [], [], {}

    def finish(event, state, code, user=None, grant=None):
        updates.append({"_id": event.id, "state": state, "result_code": code,
                        "user_id": user.id if user is not None else event.user_id, "grant": grant,
                        "matchable_at": None, "ledger_id": None, "ledgered_at": None})
        counts[state] = counts.get(state, 0) + 1

    for event in events:
        if event.event_type not in (TAG_ADDED, TAG_REMOVED):
            finish(event, "ignored", "unsupported_event")
            continue
        user = by_contact.get(event.contact_id) if event.contact_id else None
        if user is None and event.email:
            user = by_email.get(event.email.lower())
            if user is not None and event.contact_id and user.contact_id is None:
                user.contact_id = event.contact_id  # bound on the first e-mail match, as match_user does
                by_contact[event.contact_id] = user
                binds.append((user.id, event.contact_id))
        if event.event_type == TAG_REMOVED:
            # Kept for audit; a grant is one-off and is not taken back by Kajabi removing the tag.
            finish(event, "recorded", "tag_removed", user)
            audit.record("kajabi.tag_removed", "kajabi_event", event.id, tag=event.tag,
                         user_id=user.id if user else None)
        elif user is None:
            finish(event, "queued_unmatched", "unmatched_contact")
        elif not event.tag or event.tag not in mapping:
            finish(event, "ignored", "unknown_tag", user)
        elif event.tag in dated:
            finish(event, "ignored", "needs_session_date", user)
        else:
            grant = ledger_batch.Grant(user.id, mapping[event.tag], ledger.KAJABI_SOURCE,
                                 grant_event_id(user.id, user.contact_id, event.contact_id, event.tag),
                                 _event_time(event, now), tag=event.tag,
                                 meta={"kajabi_event_id": event.event_id, "kajabi_event_row": event.id})
            grants.append(grant)
            finish(event, "ledgered", None, user, grant)
            updates[-1]["matchable_at"] = matchable_at(event.received_at, user.created_at, mapped_at[event.tag])

    if binds:
        run(_BIND, {"now": now, "uids": [b[0] for b in binds], "contacts": [b[1] for b in binds]})
    ledger_batch.record_many(grants)
    stamp = utcnow()
    for row in updates:
        grant = row.pop("grant")
        if grant is not None:
            row.update(result_code=grant.code, ledger_id=grant.id, ledgered_at=stamp)
    run(_FINISH, {"stamp": stamp, "ids": [r["_id"] for r in updates], "states": [r["state"] for r in updates],
                  "codes": [r["result_code"] for r in updates], "uids": [r["user_id"] for r in updates],
                  "lids": [r["ledger_id"] for r in updates], "ledgered": [r["ledgered_at"] for r in updates],
                  "matchable": [r["matchable_at"] for r in updates]})
    # The SLO's pre-aggregated figures, in this same transaction (a Core UPDATE: the ORM's
    # after_flush listener in core.points.latency_hist does not see it). Every claimed row was `received`.
    received_at = {e.id: e.received_at for e in events}
    latency_hist.record([(received_at[row["_id"]], row["matchable_at"], row["ledgered_at"])
                         for row in updates if row["ledgered_at"] is not None])
    latency_hist.count_states(counts)
    return counts


def _event_time(event, now):
    created = _parse_time(event.payload.get("created_at")) if isinstance(event.payload, dict) else None
    return created or event.received_at or now
