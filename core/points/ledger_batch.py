"""The ledger's batch path, for the Kajabi drain: record()'s rules for many plain grants in one
transaction with a fixed number of statements (PostgreSQL only). Same locks, caps, duplicates
(by event id, and one grant per tag per user), badges, outbox rows and log lines as
core.points.ledger.record, which stays the only other writer of points_ledger."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select, text

from core.delivery import outbox
from core.points import rules
from core.platform.db import db, utcnow
from core.platform.errors import NotFound, ValidationError
from core.points.ledger import (GRANT_CODES, KAJABI_SOURCE, LOCK_NAMESPACE, SUBMISSION_SOURCE, _could_change_values, _payload,
                         award_meta, badge_rules, log_recorded)
from core.platform.models import Activity, LedgerEntry, OutboxRecord, UserBadge


@dataclass
class Grant:
    """One plain grant (no counters, no session date), as a Kajabi tag is."""
    user_id: int
    activity_code: str
    external_source: str
    external_event_id: str
    event_time: datetime
    tag: str | None = None
    meta: dict = field(default_factory=dict)
    # Filled by record_many: the row written (or the existing one for a duplicate).
    id: int | None = None
    code: str | None = None
    delta_points: int = 0
    badge_codes: list[str] = field(default_factory=list)
    counters: dict = field(default_factory=dict)
    session_date: date | None = None


class BatchConflict(Exception):
    """A row of the batch collided with a concurrent writer: roll back and take the per-event path."""


def record_many(grants: list[Grant]) -> list[Grant]:
    """record() for many grants in the caller's transaction (PostgreSQL only), in list order, with a
    fixed number of statements per batch. Same locks, caps, duplicates, badges, outbox rows and log
    lines as record(); a duplicate (same event id, or a tag the user already holds) gets code
    `duplicate_event` and the id of the row it duplicates. Raises
    BatchConflict if an insert meets a row it did not see (the caller rolls back and retries)."""
    if not grants:
        return grants
    for g in grants:
        if not g.external_event_id or not g.external_source:
            raise ValidationError("event_id_required", "A ledger event needs a source and an event id.")
    user_ids = sorted({int(g.user_id) for g in grants})
    # Sorted, so two batches sharing users always lock in the same order and never deadlock.
    db.session.execute(text("SELECT pg_advisory_xact_lock(:ns, u) FROM unnest(CAST(:uids AS int[])) AS u ORDER BY u"),
                       {"ns": LOCK_NAMESPACE, "uids": user_ids})
    codes = {g.activity_code for g in grants}
    specs = {a.code: rules.ActivitySpec.from_values(a.code, a.points, a.cap_points, a.cap_period, a.counters)
             for a in db.session.scalars(select(Activity).where(Activity.code.in_(codes)))}
    for code in codes:
        if code not in specs:
            raise NotFound("activity_not_found", f"There is no activity {code!r}.")
        if specs[code].cap_period == "rolling_7d":
            raise ValidationError("session_date_required", f"{code} events need a session date.")
    keys = {(g.external_source, g.external_event_id) for g in grants}
    existing = {(s, e): i for i, s, e in db.session.execute(
        select(LedgerEntry.id, LedgerEntry.external_source, LedgerEntry.external_event_id)
        .where(LedgerEntry.external_source.in_({s for s, _ in keys}),
               LedgerEntry.external_event_id.in_({e for _, e in keys}))) if (s, e) in keys}
    prior: dict[tuple[int, str], list[rules.PriorFact]] = {}
    for u, a, d, c, s in db.session.execute(
            select(LedgerEntry.user_id, LedgerEntry.activity_code, LedgerEntry.delta_points, LedgerEntry.counters,
                   LedgerEntry.session_date)
            .where(LedgerEntry.user_id.in_(user_ids), LedgerEntry.activity_code.in_(codes))):
        prior.setdefault((u, a), []).append(rules.PriorFact(d, {k: int(v) for k, v in (c or {}).items()}, s))

    held = _held_tags(grants)
    now, rows, fresh = utcnow(), [], []
    seen: dict[tuple[str, str], Grant] = {}  # event key -> the grant of this batch that writes it
    seen_tags: dict[tuple[int, str], Grant] = {}  # (user, tag) -> the grant of this batch that writes it
    originals: list[int | Grant | None] = []  # per grant: what a duplicate duplicates (a row id or a grant)
    for g in grants:
        if g.tag:
            g.meta["tag"] = rules.normalise_tag(g.tag)
        key = (g.external_source, g.external_event_id)
        tag_key = (g.user_id, g.meta["tag"]) if g.external_source == KAJABI_SOURCE and g.meta.get("tag") else None
        original = existing.get(key) or seen.get(key) or (tag_key and (held.get(tag_key) or seen_tags.get(tag_key)))
        originals.append(original or None)
        if original:
            g.code = "duplicate_event"
            continue
        seen[key] = g
        if tag_key:
            seen_tags[tag_key] = g
        award = rules.compute_award(specs[g.activity_code], prior.get((g.user_id, g.activity_code), []), rules.NewEvent())
        g.delta_points, g.counters, g.code = award.delta_points, award.counted, award.code
        award_meta(g.meta, award, None)
        # Later grants in this batch see this one, as they would after its commit.
        prior.setdefault((g.user_id, g.activity_code), []).append(rules.PriorFact(g.delta_points, dict(g.counters), None))
        fresh.append(g)
        rows.append({"user_id": g.user_id, "activity_code": g.activity_code, "delta_points": g.delta_points,
                     "code": g.code, "external_source": g.external_source, "external_event_id": g.external_event_id,
                     "event_time": g.event_time, "session_date": None, "counters": g.counters, "reverses_id": None,
                     "meta": g.meta, "created_at": now})
    badge_state = _badge_facts(fresh)  # read before the insert: each row then sees only rows before it
    if rows:
        inserted = db.session.execute(_batch_insert(), rows).all()
        if len(inserted) != len(rows):
            raise BatchConflict(f"{len(rows) - len(inserted)} ledger row(s) appeared while the batch ran")
        ids = {(s, e): i for i, s, e in inserted}
        for g in fresh:
            g.id = ids[(g.external_source, g.external_event_id)]
    for g, original in zip(grants, originals):
        if original is not None:
            g.id = original if isinstance(original, int) else original.id
    _award_badges_many(fresh, badge_state, now)
    for g in fresh:
        log_recorded(g, g.badge_codes)
    return grants


def _held_tags(grants: list[Grant]) -> dict[tuple[int, str], int]:
    """(user, tag) -> the user's Kajabi grant of that tag already in the ledger, for the users of
    the batch: one grant per tag per user, whatever event id a later hook carries."""
    users = {g.user_id for g in grants if g.external_source == KAJABI_SOURCE and g.tag}
    held: dict[tuple[int, str], int] = {}
    if users:
        for u, t, i in db.session.execute(
                select(LedgerEntry.user_id, LedgerEntry.meta["tag"].as_string(), LedgerEntry.id)
                .where(LedgerEntry.user_id.in_(users), LedgerEntry.external_source == KAJABI_SOURCE,
                       LedgerEntry.code.in_(GRANT_CODES)).order_by(LedgerEntry.id)):
            if t:
                held.setdefault((u, rules.normalise_tag(t)), i)
    return held


@functools.cache
def _batch_insert():
    """One statement for every batch size, run as executemany: SQLAlchemy compiles it once and
    batches the rows itself (insertmanyvalues), where .values(rows) compiled anew per batch size."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    table = LedgerEntry.__table__
    return (pg_insert(table).on_conflict_do_nothing(index_elements=[table.c.external_source, table.c.external_event_id])
            .returning(table.c.id, table.c.external_source, table.c.external_event_id))


def _badge_facts(fresh: list[Grant]) -> tuple[list[rules.BadgeRule], dict[int, list[set]]]:
    """user_facts() for every user of the batch a badge rule could change, in three queries."""
    rules_all = badge_rules() if fresh else []
    wanted = {g.user_id for g in fresh if any(_could_change_values(r, g.code, g.external_source, g.meta.get("tag"),
                                                                     g.activity_code) for r in rules_all)}
    facts: dict[int, list[set]] = {u: [set(), set(), set()] for u in wanted}
    if wanted:
        for u, t in db.session.execute(select(LedgerEntry.user_id, LedgerEntry.meta["tag"].as_string()).where(
                LedgerEntry.user_id.in_(wanted), LedgerEntry.external_source == KAJABI_SOURCE,
                LedgerEntry.code.in_(GRANT_CODES))):
            if t:
                facts[u][0].add(rules.normalise_tag(t))
        for u, a in db.session.execute(select(LedgerEntry.user_id, LedgerEntry.activity_code).distinct().where(
                LedgerEntry.user_id.in_(wanted), LedgerEntry.external_source == SUBMISSION_SOURCE,
                LedgerEntry.code.in_(GRANT_CODES))):
            facts[u][1].add(a)
        for u, b in db.session.execute(select(UserBadge.user_id, UserBadge.badge_code).where(UserBadge.user_id.in_(wanted))):
            facts[u][2].add(b)
    return rules_all, facts


def _award_badges_many(fresh: list[Grant], badge_state, now: datetime) -> None:
    """_award_badges for a batch, walking the rows in order so each badge lands on the row that
    earned it; then the badge and outbox rows in two statements."""
    rules_all, facts = badge_state
    badges, records = [], []
    for g in fresh:
        candidates = [r for r in rules_all if _could_change_values(r, g.code, g.external_source, g.meta.get("tag"),
                                                                   g.activity_code)]
        if not candidates:
            records.append(("ledger.recorded", g))
            continue
        tags, approved, held = facts[g.user_id]
        if g.code in GRANT_CODES:  # this row is now a fact too, as after record()'s flush
            if g.external_source == KAJABI_SOURCE and g.meta.get("tag"):
                tags.add(g.meta["tag"])
            if g.external_source == SUBMISSION_SOURCE:
                approved.add(g.activity_code)
        g.badge_codes = rules.newly_earned_badges(candidates, rules.UserFacts(frozenset(tags), frozenset(approved),
                                                                              frozenset(held)))
        held.update(g.badge_codes)
        for code in g.badge_codes:
            badges.append({"user_id": g.user_id, "badge_code": code, "ledger_id": g.id, "awarded_at": now})
            records.append(("badge.awarded", (g, code)))
        records.append(("ledger.recorded", g))
    if badges:
        db.session.execute(UserBadge.__table__.insert(), badges)
    rows = []
    for topic, item in records:
        if topic == "badge.awarded":
            g, code = item
            rows.append({"topic": topic, "idempotency_key": f"badge:{g.user_id}:{code}", "ledger_id": g.id,
                         "payload": {"user_id": g.user_id, "badge_code": code, "ledger_id": g.id}})
        else:
            rows.append({"topic": topic, "idempotency_key": f"ledger:{item.external_source}:{item.external_event_id}",
                         "payload": _payload(item, item.badge_codes), "ledger_id": item.id})
    if rows:
        db.session.execute(OutboxRecord.__table__.insert(),
                           [{**r, "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
                            for r in rows])
        outbox.request_kick()
