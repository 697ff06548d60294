"""The ledger's batch path, for the Kajabi drain: record()'s rules for many plain grants in one
transaction with a fixed number of statements (PostgreSQL only). Same locks, caps, duplicates
(by event id, and one grant per tag per user), badges, outbox rows and log lines as
core.points.ledger.record, which stays the only other writer of points_ledger.

Every statement here has one constant text and passes each column as one array (`= ANY`,
`unnest`), sent in binary (`%(x)b`; psycopg's text arrays escape every quote of a JSON string
through a regex, 30x slower): psycopg parses and the server plans it once per connection. The IN lists and
executemany it replaces made a new text per batch size (psycopg re-parses any text with over 50
parameters, every time) and one statement per outbox or event row: about half the drain's CPU.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from core.delivery import outbox
from core.points import rules
from core.platform.db import db, utcnow
from core.platform.errors import NotFound, ValidationError
from core.points.ledger import (GRANT_CODES, SESSION_DATE_PERIODS, KAJABI_SOURCE, LOCK_NAMESPACE, SUBMISSION_SOURCE, _could_change_values, _payload,
                         award_meta, badge_rules, log_recorded)


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


# Sorted, so two batches sharing users always lock in the same order and never deadlock.
_LOCK = "SELECT pg_advisory_xact_lock(%(ns)s, u) FROM unnest(%(uids)b::int[]) AS u ORDER BY u"
_ACTIVITIES = "SELECT code, points, cap_points, cap_period, counters FROM activities WHERE code = ANY(%(codes)b::text[])"
_EXISTING = ("SELECT id, external_source, external_event_id FROM points_ledger WHERE (external_source, external_event_id) "
             "IN (SELECT * FROM unnest(%(sources)b::text[], %(event_ids)b::text[]))")
# What caps, duplicates and badges read, in one pass over the batch's users' rows: their rows of
# the batch's activities (caps), and their grants from Kajabi (tags held) and submissions.
_FACTS = ("SELECT id, user_id, activity_code, delta_points, counters, session_date, external_source, code, meta->>'tag' "
          "FROM points_ledger WHERE user_id = ANY(%(uids)b::bigint[]) AND (activity_code = ANY(%(codes)b::text[]) "
          "OR (code = ANY(%(grant_codes)b::text[]) AND external_source = ANY(%(sources)b::text[]))) ORDER BY id")
_HELD_BADGES = "SELECT user_id, badge_code FROM user_badges WHERE user_id = ANY(%(uids)b::bigint[])"
# ORDER BY the position: ids are handed out in list order, as record() called in turn would.
_INSERT = ("INSERT INTO points_ledger (user_id, activity_code, delta_points, code, external_source, external_event_id, "
           "event_time, session_date, counters, reverses_id, meta, created_at) "
           "SELECT r.u, r.a, r.d, r.c, r.s, r.e, r.t, NULL, r.n::json, NULL, r.m::json, %(now)s "
           "FROM unnest(%(u)b::bigint[], %(a)b::text[], %(d)b::int[], %(c)b::text[], %(s)b::text[], %(e)b::text[], "
           "%(t)b::timestamptz[], %(n)b::text[], %(m)b::text[]) WITH ORDINALITY AS r(u, a, d, c, s, e, t, n, m, i) "
           "ORDER BY r.i ON CONFLICT (external_source, external_event_id) DO NOTHING "
           "RETURNING id, external_source, external_event_id")
_INSERT_BADGES = ("INSERT INTO user_badges (user_id, badge_code, ledger_id, awarded_at) SELECT r.u, r.b, r.l, %(now)s "
                  "FROM unnest(%(u)b::bigint[], %(b)b::text[], %(l)b::bigint[]) WITH ORDINALITY AS r(u, b, l, i) "
                  "ORDER BY r.i")
_INSERT_OUTBOX = ("INSERT INTO outbox (topic, idempotency_key, payload, ledger_id, status, attempts, next_attempt_at, "
                  "created_at) SELECT r.t, r.k, r.p::json, r.l, 'pending', 0, %(now)s, %(now)s "
                  "FROM unnest(%(t)b::text[], %(k)b::text[], %(p)b::text[], %(l)b::bigint[]) "
                  "WITH ORDINALITY AS r(t, k, p, l, i) ORDER BY r.i")


def run(sql: str, params: dict):
    """One statement in the session's transaction, past SQLAlchemy's compiler (the text is
    constant); driver errors come out as SQLAlchemy's."""
    return db.session.connection().exec_driver_sql(sql, params)


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
    run(_LOCK, {"ns": LOCK_NAMESPACE, "uids": user_ids})
    codes = sorted({g.activity_code for g in grants})
    specs = {c: rules.ActivitySpec.from_values(c, p, cap, period, counters)
             for c, p, cap, period, counters in run(_ACTIVITIES, {"codes": codes})}
    for code in codes:
        if code not in specs:
            raise NotFound("activity_not_found", f"There is no activity {code!r}.")
        if specs[code].cap_period in SESSION_DATE_PERIODS:
            raise ValidationError("session_date_required", f"{code} events need a session date.")
    existing = {(s, e): i for i, s, e in run(_EXISTING, {"sources": [g.external_source for g in grants],
                                                         "event_ids": [g.external_event_id for g in grants]})}
    prior, held, facts = _facts(user_ids, codes)

    now, fresh = utcnow(), []
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
    badge_state = _badge_facts(fresh, facts)  # facts read before the insert: each row then sees only rows before it
    if fresh:
        inserted = run(_INSERT, {
            "now": now, "u": [g.user_id for g in fresh], "a": [g.activity_code for g in fresh],
            "d": [g.delta_points for g in fresh], "c": [g.code for g in fresh], "s": [g.external_source for g in fresh],
            "e": [g.external_event_id for g in fresh], "t": [_aware(g.event_time) for g in fresh],
            "n": [json.dumps(g.counters) for g in fresh], "m": [json.dumps(g.meta) for g in fresh]}).all()
        if len(inserted) != len(fresh):
            raise BatchConflict(f"{len(fresh) - len(inserted)} ledger row(s) appeared while the batch ran")
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


def _aware(moment: datetime) -> datetime:
    # As the ORM's UTCDateTime binds it: a naive time is UTC (the array has no per-value type).
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _facts(user_ids: list[int], codes: list[str]):
    """From one read of the users' rows: prior facts per (user, activity) for the caps; (user,
    tag) -> the user's first Kajabi grant of that tag (one grant per tag per user, whatever event
    id a later hook carries); per user [tags held, activities approved] for badges."""
    prior: dict[tuple[int, str], list[rules.PriorFact]] = {}
    held: dict[tuple[int, str], int] = {}
    facts: dict[int, list[set]] = {}
    for i, u, a, d, c, s, source, code, tag in run(_FACTS, {
            "uids": user_ids, "codes": codes, "grant_codes": list(GRANT_CODES),
            "sources": [KAJABI_SOURCE, SUBMISSION_SOURCE]}):
        if a in codes:
            prior.setdefault((u, a), []).append(rules.PriorFact(d, {k: int(v) for k, v in (c or {}).items()}, s))
        if code not in GRANT_CODES:
            continue
        if source == KAJABI_SOURCE and tag:
            tag = rules.normalise_tag(tag)
            held.setdefault((u, tag), i)  # ordered by id: the first grant
            facts.setdefault(u, [set(), set()])[0].add(tag)
        elif source == SUBMISSION_SOURCE:
            facts.setdefault(u, [set(), set()])[1].add(a)
    return prior, held, facts


def _badge_facts(fresh: list[Grant], facts: dict[int, list[set]]) -> tuple[list[rules.BadgeRule], dict[int, list[set]]]:
    """user_facts() for every user of the batch a badge rule could change: [tags, approved, held badges]."""
    rules_all = badge_rules() if fresh else []
    wanted = sorted({g.user_id for g in fresh if any(_could_change_values(r, g.code, g.external_source,
                                                                            g.meta.get("tag"), g.activity_code)
                                                       for r in rules_all)})
    state: dict[int, list[set]] = {u: [set(facts.get(u, ((), ()))[0]), set(facts.get(u, ((), ()))[1]), set()]
                                   for u in wanted}
    if wanted:
        for u, b in run(_HELD_BADGES, {"uids": wanted}):
            state[u][2].add(b)
    return rules_all, state


def _award_badges_many(fresh: list[Grant], badge_state, now: datetime) -> None:
    """_award_badges for a batch, walking the rows in order so each badge lands on the row that
    earned it; then the badge and outbox rows in two statements."""
    rules_all, facts = badge_state
    badges, records = [], []
    for g in fresh:
        candidates = [r for r in rules_all if _could_change_values(r, g.code, g.external_source, g.meta.get("tag"),
                                                                   g.activity_code)]
        if not candidates:
            records.append(("ledger.recorded", f"ledger:{g.external_source}:{g.external_event_id}",
                            _payload(g, g.badge_codes), g.id))
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
            badges.append((g.user_id, code, g.id))
            records.append(("badge.awarded", f"badge:{g.user_id}:{code}",
                            {"user_id": g.user_id, "badge_code": code, "ledger_id": g.id}, g.id))
        records.append(("ledger.recorded", f"ledger:{g.external_source}:{g.external_event_id}",
                        _payload(g, g.badge_codes), g.id))
    if badges:
        run(_INSERT_BADGES, {"now": now, "u": [u for u, _, _ in badges], "b": [b for _, b, _ in badges],
                             "l": [i for _, _, i in badges]})
    if records:
        run(_INSERT_OUTBOX, {"now": now, "t": [r[0] for r in records], "k": [r[1] for r in records],
                             "p": [json.dumps(r[2]) for r in records], "l": [r[3] for r in records]})
        outbox.request_kick()
