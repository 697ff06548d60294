"""Properties of the points rules: caps hold for any order of events, duplicates add nothing,
badges follow the catalogue, totals are the sum of the ledger. First on the pure rules with an
in-memory ledger model (many examples, no app), then a smaller run through the real
ledger.record on PostgreSQL."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from core.points import rules
from core.points.catalogue import ACTIVITIES, BADGES

SPECS = {a["code"]: rules.ActivitySpec.from_values(a["code"], a["points"], a["cap_points"], a["cap_period"], a["counters"])
         for a in ACTIVITIES}
BADGE_RULES = [rules.BadgeRule.from_values(b["code"], b["rule"]) for b in BADGES]
TAGS = ["elevate-ai-1-completed", "elevate-ai-2-completed"]
DAY0 = date(2024, 3, 1)


@dataclass
class Row:
    user: int
    activity: str
    source: str
    event_id: str
    delta: int
    counted: dict
    session_date: date | None
    code: str
    tag: str | None = None


@dataclass
class ModelLedger:
    """The ledger's contract in memory: unique (source, event id), one Kajabi grant per tag per
    user, caps via core.points.rules, badges."""
    rows: list[Row] = field(default_factory=list)
    badges: dict[int, set[str]] = field(default_factory=dict)

    def record(self, user: int, activity: str, source: str, event_id: str, counters: dict, session_date, tag=None):
        if any(r.source == source and r.event_id == event_id for r in self.rows):
            return None  # duplicate_event
        if source == "kajabi" and tag and any(r.user == user and r.source == "kajabi" and r.tag == tag for r in self.rows):
            return None  # duplicate_event: one grant per tag per user, whatever the event id
        prior = [rules.PriorFact(r.delta, r.counted, r.session_date) for r in self.rows
                 if r.user == user and r.activity == activity]
        award = rules.compute_award(SPECS[activity], prior, rules.NewEvent(counters, session_date))
        self.rows.append(Row(user, activity, source, event_id, award.delta_points, award.counted, session_date, award.code, tag))
        facts = rules.UserFacts(
            frozenset(r.tag for r in self.rows if r.user == user and r.source == "kajabi" and r.tag),
            frozenset(r.activity for r in self.rows if r.user == user and r.source == "submission"),
            frozenset(self.badges.get(user, set())))
        self.badges.setdefault(user, set()).update(rules.newly_earned_badges(BADGE_RULES, facts))
        return award


# --- strategies ---------------------------------------------------------------------------------

def event_strategy():
    learn = st.builds(lambda tag, n: ("LEARN", "kajabi", f"kajabi:tag:c:{tag}" if n == 0 else f"bf-{n}", {}, None, tag),
                      st.sampled_from(TAGS), st.integers(0, 4))
    once = st.builds(lambda code, sub: (code, "submission", f"submission:{sub}:approved:v1", {}, DAY0, None),
                     st.sampled_from(["EXPLORE", "PRESENT"]), st.integers(1, 6))
    amplify = st.builds(lambda sub, peers, students, offset: (
        "AMPLIFY", "submission", f"submission:{sub}:approved:v1", {"peers": peers, "students": students},
        DAY0 + timedelta(days=offset), None),
        st.integers(100, 130), st.integers(0, 50), st.integers(0, 200), st.integers(0, 20))
    return st.tuples(st.integers(1, 2), st.one_of(learn, once, amplify))


def check_invariants(model: ModelLedger) -> None:
    for (user, activity), group in itertools.groupby(sorted(model.rows, key=lambda r: (r.user, r.activity)),
                                                     key=lambda r: (r.user, r.activity)):
        group = list(group)
        total = sum(r.delta for r in group)
        assert all(r.delta >= 0 for r in group)
        if activity == "LEARN":
            assert total <= 20
        elif activity == "EXPLORE":
            assert total <= 50 and sum(1 for r in group if r.delta > 0) <= 1
        elif activity == "PRESENT":
            assert total <= 20 and sum(1 for r in group if r.delta > 0) <= 1
        else:
            days = [r.session_date for r in group]
            for start in (min(days) + timedelta(days=i) for i in range(-6, (max(days) - min(days)).days + 1)):
                window = [r for r in group if start <= r.session_date <= start + timedelta(days=6)]
                assert sum(r.counted.get("peers", 0) for r in window) <= 50
                assert sum(r.counted.get("students", 0) for r in window) <= 200
            for r in group:
                assert r.delta == 2 * r.counted["peers"] + r.counted["students"]
        for r in group:
            assert r.code in (rules.AWARDED, rules.CAP_REACHED) and (r.code == rules.AWARDED or r.delta == 0)
    for user, badges in model.badges.items():
        tags = {r.tag for r in model.rows if r.user == user and r.source == "kajabi"}
        approved = {r.activity for r in model.rows if r.user == user and r.source == "submission"}
        expected = {b.code for b in BADGE_RULES if rules.badge_met(b, rules.UserFacts(frozenset(tags), frozenset(approved)))}
        assert badges == expected


@settings(max_examples=400, deadline=None)
@given(st.lists(event_strategy(), max_size=40), st.randoms(use_true_random=False))
def test_caps_duplicates_badges_hold_for_any_order(events, rnd):
    for order in (events, rnd.sample(events, len(events)), events + events):
        model = ModelLedger()
        for user, (activity, source, event_id, counters, session_date, tag) in order:
            before = sum(r.delta for r in model.rows)
            award = model.record(user, activity, source, event_id, counters, session_date, tag)
            if award is None:  # a duplicate adds no row and no points
                assert sum(r.delta for r in model.rows) == before
        check_invariants(model)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 60), st.integers(0, 250)), max_size=25))
def test_rolling_window_out_of_order_never_exceeds_a_window(events):
    prior: list[rules.PriorFact] = []
    for offset, peers, students in events:
        day = DAY0 + timedelta(days=offset)
        award = rules.compute_award(SPECS["AMPLIFY"], prior, rules.NewEvent({"peers": peers, "students": students}, day))
        assert award.counted["peers"] <= peers and award.counted["students"] <= students
        prior.append(rules.PriorFact(award.delta_points, award.counted, day))
    for start in range(-6, 21):
        lo = DAY0 + timedelta(days=start)
        window = [f for f in prior if lo <= f.session_date <= lo + timedelta(days=6)]
        assert sum(f.counted["peers"] for f in window) <= 50
        assert sum(f.counted["students"] for f in window) <= 200


def test_partial_cap_awards_the_remainder_and_full_cap_is_cap_reached():
    spec = SPECS["AMPLIFY"]
    first = rules.compute_award(spec, [], rules.NewEvent({"peers": 40}, DAY0))
    assert (first.delta_points, first.code, first.capped) == (80, "awarded", False)
    prior = [rules.PriorFact(80, first.counted, DAY0)]
    second = rules.compute_award(spec, prior, rules.NewEvent({"peers": 20}, DAY0 + timedelta(days=3)))
    assert (second.delta_points, second.counted["peers"], second.code, second.capped) == (20, 10, "awarded", True)
    prior.append(rules.PriorFact(20, second.counted, DAY0 + timedelta(days=3)))
    third = rules.compute_award(spec, prior, rules.NewEvent({"peers": 5}, DAY0 + timedelta(days=6)))
    assert (third.delta_points, third.code) == (0, "cap_reached")
    # Seven days after the first session the window has moved on.
    later = rules.compute_award(spec, prior, rules.NewEvent({"peers": 5}, DAY0 + timedelta(days=10)))
    assert later.delta_points == 10


def test_revocation_frees_room_and_once_means_once():
    spec = SPECS["EXPLORE"]
    assert rules.compute_award(spec, [], rules.NewEvent()).delta_points == 50
    assert rules.compute_award(spec, [rules.PriorFact(50)], rules.NewEvent()).code == "cap_reached"
    assert rules.compute_award(spec, [rules.PriorFact(50), rules.PriorFact(-50)], rules.NewEvent()).delta_points == 50


def test_badges_are_earned_once_and_never_taken_back():
    both_tags = frozenset(TAGS)
    assert rules.newly_earned_badges(BADGE_RULES, rules.UserFacts(both_tags)) == ["STARTER"]
    # Held already: its rule is still met, and it is not awarded a second time.
    assert rules.newly_earned_badges(BADGE_RULES, rules.UserFacts(both_tags, frozenset(), frozenset({"STARTER"}))) == []
    # Held, and the facts no longer meet the rule: nothing is taken back (there is no "lost" list).
    held_without_tags = rules.UserFacts(frozenset(), frozenset({"EXPLORE"}), frozenset({"STARTER"}))
    assert rules.newly_earned_badges(BADGE_RULES, held_without_tags) == ["IN_CLASS_INNOVATOR"]


# --- the same properties through the real ledger on PostgreSQL ------------------------------------

_counter = itertools.count(1)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(st.lists(event_strategy(), min_size=1, max_size=15), st.randoms(use_true_random=False))
def test_real_ledger_keeps_caps_and_totals(app, events, rnd):
    from sqlalchemy import func, select

    from core.points import catalogue, ledger
    from core.accounts.users import create_user
    from core.platform.db import db
    from core.platform.errors import Conflict
    from core.platform.models import LedgerEntry, OutboxRecord, UserBadge

    with app.app_context():
        catalogue.seed_catalogue()
        run = next(_counter)
        users = {n: create_user(f"prop{run}-{n}@example.com", "uploader")[0].id for n in (1, 2)}
        db.session.commit()
        model = ModelLedger()
        now = datetime.now(timezone.utc)
        for user, (activity, source, event_id, counters, session_date, tag) in rnd.sample(events + events[:3], len(events[:3]) + len(events)):
            event_id = f"{run}:{user}:{event_id}"
            expected = model.record(users[user], activity, source, event_id, counters, session_date, tag)
            try:
                result = ledger.record(users[user], activity, source, event_id, now, counters=counters,
                                       session_date=session_date, tag=tag)
                assert expected is not None and result.delta_points == expected.delta_points and result.code == expected.code
            except Conflict as exc:
                assert expected is None and exc.code == "duplicate_event"
            db.session.commit()
        for uid in users.values():
            rows = db.session.scalars(select(LedgerEntry).where(LedgerEntry.user_id == uid)).all()
            assert ledger.user_totals(uid)["total"] == sum(r.delta_points for r in rows)
            held = set(db.session.scalars(select(UserBadge.badge_code).where(UserBadge.user_id == uid)))
            assert held == model.badges.get(uid, set())
        check_invariants(model)
        ledger_ids = set(db.session.scalars(select(LedgerEntry.id)))
        outbox_ids = set(db.session.scalars(select(OutboxRecord.ledger_id).where(OutboxRecord.topic == "ledger.recorded")))
        assert ledger_ids <= outbox_ids
        # Every event the model kept is one row of this example's users, duplicates none.
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)
                                 .where(LedgerEntry.user_id.in_(users.values()))) == len(model.rows)
