"""The points rules as pure functions on plain values: no app, no database, no clock.

`compute_award` decides what one new event is worth given the user's prior ledger facts for the
same activity; `newly_earned_badges` decides which badges a user's facts now earn. `core.points.ledger`
loads the facts, calls these, and writes the result; the tests drive them with in-memory models.

Decisions (documented here because the catalogue is data and admins edit it):
- A cap applies per *cap period*: `none` (each event on its own), `total` (all of a user's rows),
  `once` (the first award only), `rolling_7d` (every 7-day window of session dates).
- Prior facts are net: a revocation is a prior fact with negative points and counters, so a
  revoked award frees its room under the cap again. Badges are never taken back.
- A partially capped event awards the remainder (code `awarded`, `capped=True`); only an event
  that would have earned something but gets 0 is `cap_reached`. An event asking for nothing
  (all counters 0) is `awarded` with 0 points.
- Rolling 7 days is by session date, not arrival: the new event at day d belongs to the seven
  windows starting d-6 .. d, and it is allowed only what fits in *all* of them, so an event that
  arrives late (out of order) can never push an already-full window over its cap.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

CAP_PERIODS = ("none", "total", "once", "rolling_7d")
ROLLING_DAYS = 7
AWARDED = "awarded"
CAP_REACHED = "cap_reached"


@dataclass(frozen=True)
class CounterSpec:
    name: str
    points_each: int
    cap: int | None = None  # per cap period


@dataclass(frozen=True)
class ActivitySpec:
    code: str
    points: int = 0  # base points per event
    cap_points: int | None = None
    cap_period: str = "none"
    counters: tuple[CounterSpec, ...] = ()

    @classmethod
    def from_values(cls, code: str, points: int, cap_points: int | None, cap_period: str,
                    counters: Iterable[Mapping] | None) -> "ActivitySpec":
        """Build from an Activity row's columns (counters as stored: a list of dicts)."""
        if cap_period not in CAP_PERIODS:
            raise ValueError(f"unknown cap_period {cap_period!r}")
        specs = tuple(CounterSpec(str(c["name"]), int(c.get("points_each", 0) or 0),
                                  None if c.get("cap") is None else int(c["cap"])) for c in (counters or []))
        return cls(code, int(points or 0), None if cap_points is None else int(cap_points), cap_period, specs)


@dataclass(frozen=True)
class PriorFact:
    """One earlier ledger row of the same user and activity (revocations carry negative values)."""
    delta_points: int
    counted: Mapping[str, int] = field(default_factory=dict)
    session_date: date | None = None


@dataclass(frozen=True)
class NewEvent:
    counters: Mapping[str, int] = field(default_factory=dict)
    session_date: date | None = None


@dataclass(frozen=True)
class Award:
    delta_points: int
    counted: dict[str, int]
    code: str  # awarded | cap_reached
    capped: bool = False  # True when anything asked for was cut by a cap
    requested_points: int = 0


def _windows(spec: ActivitySpec, prior: Sequence[PriorFact], event: NewEvent) -> list[list[PriorFact]]:
    """The groups of prior facts each cap must hold in, for the new event's period."""
    if spec.cap_period == "none":
        return [[]]  # a cap bounds each event on its own
    if spec.cap_period in ("total", "once"):
        return [list(prior)]
    day = event.session_date
    if day is None:
        raise ValueError(f"{spec.code}: a rolling_7d activity needs a session date")
    groups = []
    for start_offset in range(ROLLING_DAYS - 1, -1, -1):
        start = day - timedelta(days=start_offset)
        end = start + timedelta(days=ROLLING_DAYS - 1)
        groups.append([f for f in prior if f.session_date is not None and start <= f.session_date <= end])
    return groups


def _room(cap: int, used_per_window: Iterable[int]) -> int:
    return max(0, min(cap - used for used in used_per_window))


def compute_award(spec: ActivitySpec, prior: Sequence[PriorFact], event: NewEvent) -> Award:
    """What the new event earns under the activity's caps, given the user's prior facts."""
    windows = _windows(spec, prior, event)
    asked = {c.name: max(0, int(event.counters.get(c.name, 0) or 0)) for c in spec.counters}
    counted: dict[str, int] = {}
    capped = False
    for counter in spec.counters:
        want = asked[counter.name]
        if counter.cap is not None:
            room = _room(counter.cap, (sum(int(f.counted.get(counter.name, 0)) for f in w) for w in windows))
            if want > room:
                want, capped = room, True
        counted[counter.name] = want
    requested = spec.points + sum(asked[c.name] * c.points_each for c in spec.counters)
    points = spec.points + sum(counted[c.name] * c.points_each for c in spec.counters)

    if spec.cap_period == "once":
        already = sum(f.delta_points for f in prior)
        cap = spec.cap_points if spec.cap_points is not None else spec.points
        if already > 0:
            points, capped = 0, True
        elif points > cap:
            points, capped = cap, True
    elif spec.cap_points is not None:
        room = _room(spec.cap_points, (sum(f.delta_points for f in w) for w in windows))
        if points > room:
            points, capped = room, True

    if points == 0 and requested > 0:
        return Award(0, {name: 0 for name in counted}, CAP_REACHED, True, requested)
    return Award(points, counted, AWARDED, capped, requested)


# --- badges -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BadgeRule:
    code: str
    type: str  # tags_held | first_approved
    tags: tuple[str, ...] = ()
    activity: str | None = None

    @classmethod
    def from_values(cls, code: str, rule: Mapping | None) -> "BadgeRule":
        rule = rule or {}
        tags = tuple(normalise_tag(t) for t in rule.get("tags", []) or [])
        return cls(code, str(rule.get("type", "")), tags, rule.get("activity"))


@dataclass(frozen=True)
class UserFacts:
    """What badges look at. tags_held: every tag ever granted to the user (a grant that hit the
    cap still means the user holds the tag). approved_activities: activities with at least one
    approved submission row in the ledger (awarded or capped)."""
    tags_held: frozenset[str] = frozenset()
    approved_activities: frozenset[str] = frozenset()
    badges_held: frozenset[str] = frozenset()


def badge_met(rule: BadgeRule, facts: UserFacts) -> bool:
    if rule.type == "tags_held":
        return bool(rule.tags) and set(rule.tags) <= facts.tags_held
    if rule.type == "first_approved":
        return rule.activity is not None and rule.activity in facts.approved_activities
    return False  # an unknown rule type earns nothing rather than everything


def newly_earned_badges(rules: Sequence[BadgeRule], facts: UserFacts) -> list[str]:
    """Badges whose rules are met and that the user does not hold yet (never taken back)."""
    return sorted(r.code for r in rules if r.code not in facts.badges_held and badge_met(r, facts))


def normalise_tag(tag: str | None) -> str:
    return (tag or "").strip().lower()


def room_left(spec: ActivitySpec, prior: Sequence[PriorFact], event: NewEvent) -> dict[str, int | None]:
    """What the caps still allow for a new event, by the same windows compute_award uses:
    {"points": room under cap_points (None when uncapped), <counter>: room (None when uncapped)}.
    For `once`, points is 0 once anything was awarded."""
    windows = _windows(spec, prior, event)
    room: dict[str, int | None] = {}
    if spec.cap_period == "once":
        cap = spec.cap_points if spec.cap_points is not None else spec.points
        room["points"] = 0 if sum(f.delta_points for f in prior) > 0 else cap
    elif spec.cap_points is not None and spec.cap_period != "none":
        room["points"] = _room(spec.cap_points, (sum(f.delta_points for f in w) for w in windows))
    else:
        room["points"] = None
    for counter in spec.counters:
        room[counter.name] = None if counter.cap is None else _room(
            counter.cap, (sum(int(f.counted.get(counter.name, 0)) for f in w) for w in windows))
    return room


# When an event may say it happened: not before the programme's era, and not more than a day
# ahead of the clock (skew between Kajabi's clock and ours). Outside that, a date is a mistake
# or an attack: a year-9999 date once made every daily rollup overflow.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_FUTURE_SKEW = timedelta(days=1)


def event_time_ok(moment: datetime, now: datetime) -> bool:
    """True when `moment` (timezone-aware) lies in [EARLIEST_EVENT_TIME, now + MAX_FUTURE_SKEW]."""
    return EARLIEST_EVENT_TIME <= moment <= now + MAX_FUTURE_SKEW
