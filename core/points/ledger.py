"""The only writer of points_ledger. Append-only: revocations and corrections are new rows.

Every write runs in the caller's transaction (this module flushes, the caller commits):
per-user lock -> caps (core.points.rules) -> insert (duplicates caught by the unique constraint inside a
savepoint, so the caller's transaction stays usable) -> badges -> outbox records -> one log line.

Locking: on PostgreSQL `pg_advisory_xact_lock(LOCK_NAMESPACE, user_id)` serialises writers of
one user until their commit, so two processes can never both see room under a cap. SQLite (the
dev default) allows one writer per database, and a transaction that read the facts cannot commit
a write after another writer committed (SQLite answers "database is locked"), so the worst case
there is a failed, retryable write, never an exceeded cap; `BEGIN IMMEDIATE` is not needed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from core.delivery import outbox
from core.points import rules
from core.platform.db import db, is_postgres, utcnow
from core.platform.errors import Conflict, NotFound, ValidationError
from core.platform.models import Activity, Badge, LedgerEntry, UserBadge

log = logging.getLogger("ledger")

LOCK_NAMESPACE = 7_401  # first key of the two-int advisory lock; the second is the user id
SUBMISSION_SOURCE = "submission"
KAJABI_SOURCE = "kajabi"
# Rows that count as "the user holds this tag / had this approved" for badges.
GRANT_CODES = (rules.AWARDED, rules.CAP_REACHED)


@dataclass
class RecordResult:
    entry: LedgerEntry
    code: str
    delta_points: int
    badge_codes: list[str] = field(default_factory=list)


def _lock_user(user_id: int) -> None:
    if is_postgres():
        db.session.execute(text("SELECT pg_advisory_xact_lock(:ns, :uid)"), {"ns": LOCK_NAMESPACE, "uid": int(user_id)})


# Cap periods counted by the session's date: an event for such an activity must carry one, which a
# Kajabi tag never does (core.points.kajabi leaves those events `ignored`, the admin pages refuse the mapping).
SESSION_DATE_PERIODS = ("rolling_7d",)


def activity_spec(activity_code: str) -> rules.ActivitySpec:
    activity = db.session.get(Activity, activity_code)
    if activity is None:
        raise NotFound("activity_not_found", f"There is no activity {activity_code!r}.")
    return rules.ActivitySpec.from_values(activity.code, activity.points, activity.cap_points, activity.cap_period,
                                         activity.counters)


def prior_facts(user_id: int, activity_code: str) -> list[rules.PriorFact]:
    rows = db.session.execute(
        select(LedgerEntry.delta_points, LedgerEntry.counters, LedgerEntry.session_date)
        .where(LedgerEntry.user_id == user_id, LedgerEntry.activity_code == activity_code)).all()
    return [rules.PriorFact(d, {k: int(v) for k, v in (c or {}).items()}, s) for d, c, s in rows]


def user_facts(user_id: int) -> rules.UserFacts:
    tags = db.session.scalars(
        select(LedgerEntry.meta["tag"].as_string())
        .where(LedgerEntry.user_id == user_id, LedgerEntry.external_source == KAJABI_SOURCE,
               LedgerEntry.code.in_(GRANT_CODES))).all()
    approved = db.session.scalars(
        select(LedgerEntry.activity_code).distinct()
        .where(LedgerEntry.user_id == user_id, LedgerEntry.external_source == SUBMISSION_SOURCE,
               LedgerEntry.code.in_(GRANT_CODES))).all()
    held = db.session.scalars(select(UserBadge.badge_code).where(UserBadge.user_id == user_id)).all()
    return rules.UserFacts(frozenset(rules.normalise_tag(t) for t in tags if t), frozenset(approved), frozenset(held))


def badge_rules() -> list[rules.BadgeRule]:
    return [rules.BadgeRule.from_values(b.code, b.rule) for b in db.session.scalars(select(Badge))]


def _insert(entry: LedgerEntry) -> None:
    try:
        with db.session.begin_nested():
            db.session.add(entry)
    except IntegrityError:
        raise Conflict("duplicate_event", f"Event {entry.external_event_id!r} from {entry.external_source} is already "
                       "in the ledger.", [{"field": "external_event_id", "issue": entry.external_event_id}]) from None


def _could_change(rule: rules.BadgeRule, entry: LedgerEntry) -> bool:
    """Only rules this row can newly satisfy are evaluated; the rest cost no queries."""
    return _could_change_values(rule, entry.code, entry.external_source, (entry.meta or {}).get("tag"),
                                entry.activity_code)


def _could_change_values(rule: rules.BadgeRule, code: str, source: str, tag: str | None, activity_code: str) -> bool:
    # On plain values, so the batch path (record_many) decides exactly as record() does.
    if code not in GRANT_CODES:
        return False
    if rule.type == "tags_held":
        return source == KAJABI_SOURCE and tag in rule.tags
    if rule.type == "first_approved":
        return source == SUBMISSION_SOURCE and rule.activity == activity_code
    return False


def _award_badges(user_id: int, entry: LedgerEntry) -> list[str]:
    candidates = [r for r in badge_rules() if _could_change(r, entry)]
    if not candidates:
        return []
    codes = rules.newly_earned_badges(candidates, user_facts(user_id))
    for code in codes:
        db.session.add(UserBadge(user_id=user_id, badge_code=code, ledger_id=entry.id, awarded_at=utcnow()))
        outbox.append("badge.awarded", f"badge:{user_id}:{code}",
                      {"user_id": user_id, "badge_code": code, "ledger_id": entry.id}, ledger_id=entry.id)
    return codes


def _payload(entry, badge_codes: list[str]) -> dict:
    return {"ledger_id": entry.id, "user_id": entry.user_id, "activity_code": entry.activity_code,
            "delta_points": entry.delta_points, "code": entry.code, "external_source": entry.external_source,
            "external_event_id": entry.external_event_id, "event_time": entry.event_time.isoformat(),
            "session_date": entry.session_date.isoformat() if entry.session_date else None,
            "counters": entry.counters, "badge_codes": badge_codes}


def _finish(entry: LedgerEntry, *, with_badges: bool = True) -> RecordResult:
    db.session.flush()
    badge_codes = _award_badges(entry.user_id, entry) if with_badges else []
    outbox.append("ledger.recorded", f"ledger:{entry.external_source}:{entry.external_event_id}",
                  _payload(entry, badge_codes), ledger_id=entry.id)
    db.session.flush()
    log_recorded(entry, badge_codes)
    return RecordResult(entry, entry.code, entry.delta_points, badge_codes)


def log_recorded(entry, badge_codes: list[str]) -> None:
    """The one log line per ledger write (record() and the batch path)."""
    log.info("ledger.recorded", extra={"event": "ledger.recorded", "user_id": entry.user_id,
                                       "activity_code": entry.activity_code, "external_event_id": entry.external_event_id,
                                       "external_source": entry.external_source, "ledger_id": entry.id,
                                       "delta_points": entry.delta_points, "code": entry.code, "badge_codes": badge_codes})


def record(user_id: int, activity_code: str, external_source: str, external_event_id: str, event_time: datetime, *,
           counters: dict | None = None, session_date: date | None = None, meta: dict | None = None,
           tag: str | None = None, reverses_id: int | None = None, code_override: str | None = None) -> RecordResult:
    """Append one event. Raises Conflict("duplicate_event") for a known (source, event id), or for
    a Kajabi tag the user already holds; a capped event is kept with 0 points and code
    `cap_reached`. With `reverses_id`, writes the compensating row for that entry instead."""
    if not external_event_id or not external_source:
        raise ValidationError("event_id_required", "A ledger event needs a source and an event id.")
    _lock_user(user_id)
    meta = dict(meta or {})
    if tag:
        meta["tag"] = rules.normalise_tag(tag)
        held = tag_grant(user_id, meta["tag"]) if external_source == KAJABI_SOURCE and reverses_id is None else None
        if held is not None:
            raise Conflict("duplicate_event", f"The user already holds the tag {meta['tag']!r} (ledger entry {held}).",
                           [{"field": "tag", "issue": meta["tag"]}])
    if reverses_id is not None:
        delta, counted, session_date = _reversal_amounts(reverses_id, user_id, activity_code)
        code = code_override or "revoked"
        meta.setdefault("requested_counters", counters or {})
    else:
        spec = activity_spec(activity_code)
        if spec.cap_period in SESSION_DATE_PERIODS and session_date is None:
            raise ValidationError("session_date_required", f"{activity_code} events need a session date.")
        award = rules.compute_award(spec, prior_facts(user_id, activity_code),
                                    rules.NewEvent(counters or {}, session_date))
        delta, counted, code = award.delta_points, award.counted, code_override or award.code
        award_meta(meta, award, counters)
    entry = LedgerEntry(user_id=user_id, activity_code=activity_code, delta_points=delta, code=code,
                        external_source=external_source, external_event_id=external_event_id, event_time=event_time,
                        session_date=session_date, counters=counted, reverses_id=reverses_id, meta=meta,
                        created_at=utcnow())
    _insert(entry)
    return _finish(entry, with_badges=reverses_id is None)


def award_meta(meta: dict, award: rules.Award, counters: dict | None) -> None:
    """What an award adds to the row's meta (shared with the batch path)."""
    if counters:
        meta["requested_counters"] = {k: int(v) for k, v in counters.items()}
    if award.capped:
        meta["capped"] = True
        meta["requested_points"] = award.requested_points


def _reversal_amounts(ledger_id: int, user_id: int, activity_code: str) -> tuple[int, dict, date | None]:
    original = db.session.get(LedgerEntry, ledger_id)
    if original is None:
        raise NotFound("ledger_entry_not_found", f"There is no ledger entry {ledger_id}.")
    if original.user_id != user_id or original.activity_code != activity_code:
        raise ValidationError("reversal_mismatch", "A reversal must name the original entry's user and activity.")
    # Net of earlier reversals, so revoking twice (under other event ids) can never go below zero.
    rows = db.session.execute(select(LedgerEntry.delta_points, LedgerEntry.counters)
                              .where(LedgerEntry.reverses_id == ledger_id)).all()
    delta = original.delta_points + sum(d for d, _ in rows)
    counted = {k: int(v) for k, v in (original.counters or {}).items()}
    for _, c in rows:
        for k, v in (c or {}).items():
            counted[k] = counted.get(k, 0) + int(v)
    if delta == 0 and not any(counted.values()) and rows:
        raise Conflict("already_revoked", f"Ledger entry {ledger_id} has already been reversed.")
    return -delta, {k: -v for k, v in counted.items()}, original.session_date


def revoke(ledger_id: int, reason: str, actor: int | str | None, *, external_source: str = "admin",
           external_event_id: str | None = None) -> RecordResult:
    """Write the compensating row for an entry (negated points and counters). Badges stay."""
    original = db.session.get(LedgerEntry, ledger_id)
    if original is None:
        raise NotFound("ledger_entry_not_found", f"There is no ledger entry {ledger_id}.")
    return record(original.user_id, original.activity_code, external_source,
                  external_event_id or f"ledger:{ledger_id}:revoked", utcnow(), reverses_id=ledger_id,
                  meta={"reason": reason, "actor": actor})


def correct(user_id: int, activity_code: str, delta_points: int, reason: str, actor: int | str | None, *,
            external_event_id: str, session_date: date | None = None) -> RecordResult:
    """An admin's explicit adjustment (positive or negative), outside the caps, as its own row."""
    if not reason:
        raise ValidationError("reason_required", "A correction needs a reason.", [{"field": "reason", "issue": "missing"}])
    _lock_user(user_id)
    activity_spec(activity_code)  # the activity must exist
    entry = LedgerEntry(user_id=user_id, activity_code=activity_code, delta_points=int(delta_points), code="correction",
                        external_source="correction", external_event_id=external_event_id, event_time=utcnow(),
                        session_date=session_date, counters={}, meta={"reason": reason, "actor": actor},
                        created_at=utcnow())
    _insert(entry)
    return _finish(entry, with_badges=False)


def user_totals(user_id: int) -> dict:
    """{"total": n, "by_activity": {code: n}}, summed from the ledger itself."""
    rows = db.session.execute(select(LedgerEntry.activity_code, func.coalesce(func.sum(LedgerEntry.delta_points), 0))
                              .where(LedgerEntry.user_id == user_id).group_by(LedgerEntry.activity_code)).all()
    by_activity = {code: int(points) for code, points in rows}
    return {"total": sum(by_activity.values()), "by_activity": by_activity}


def tag_grant(user_id: int, tag: str) -> int | None:
    """The id of the user's Kajabi grant of `tag`, if any. One grant per tag per user: a hook
    under another event id (another contact id, or none) is a duplicate of it."""
    return db.session.scalar(select(func.min(LedgerEntry.id)).where(
        LedgerEntry.user_id == user_id, LedgerEntry.external_source == KAJABI_SOURCE,
        LedgerEntry.code.in_(GRANT_CODES), LedgerEntry.meta["tag"].as_string() == rules.normalise_tag(tag)))


def find(external_source: str, external_event_id: str) -> LedgerEntry | None:
    return db.session.scalar(select(LedgerEntry).where(LedgerEntry.external_source == external_source,
                                                       LedgerEntry.external_event_id == external_event_id))
