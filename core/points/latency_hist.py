"""Pre-aggregated Kajabi figures behind /api/slo and /metrics: tag -> ledger latencies per hour
and per day of receipt, and events per state, so that a 28-day figure at 10M events reads a few
thousand rows instead of every event (issue 18, goal 4).

Latency is `ledgered_at - coalesce(matchable_at, received_at)` (core.monitoring.slo.MATCHABLE),
in whole microseconds. Buckets are log-spaced, DDSketch-like: bucket i holds latencies in
(EDGES[i-1], EDGES[i]], each edge at most 1% above the one below it, and 60 s (the SLO target)
is an edge. So:
- counts, `within_60s` and the ratio are exact;
- a percentile is percentile_cont's interpolation between two ranks, each estimated by the upper
  edge of its bucket: never below the exact figure, less than 1% (RELATIVE_ERROR) above it, and
  exact when the latencies sit on edges. Below 100 us every microsecond is its own bucket;
  latencies <= 0 (clock skew) count as 0; above a year as a year.
EDGES is part of the stored data: changing it means `flask slo backfill` again.

Writers, in the transaction that changes the event (so a crash loses nothing and counts nothing
twice):
- the ORM (core.points.kajabi.process: the drain's per-event fallback, reconcile, the admin's
  attach): an `after_flush` listener counts every KajabiEvent whose ledgered_at or state the
  flush wrote;
- Core statements must call record() and count_states() themselves (core.points.kajabi_batch).
Rows are upserted (`n = n + excluded.n`) in key order, hour table before day table before
counts, so concurrent drains never deadlock on them; each drain holds them only from its last
statement to its commit.

Per-state counts: a counts table kept in those same transactions, not a GROUP BY over every event
(about 1 s at 10M). `received` is not kept: every webhook inserts one, and one counter row would
serialise the webhook's inserts; it is a small backlog, counted live on (state, received_at).
"""
from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, cast, delete, event, func, insert, select, text
from sqlalchemy.orm import Session, attributes

from core.platform.db import db, is_postgres, utcnow
from core.platform.models import KajabiEvent, KajabiLatencyDay, KajabiLatencyHour, KajabiStateCount

TARGET_US = 60_000_000  # core.monitoring.slo.TARGET_SECONDS, an exact edge
RELATIVE_ERROR = 0.01
_YEAR_US = 366 * 86400 * 1_000_000
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
UNCOUNTED_STATE = "received"


def _edges() -> list[int]:
    down, edge = [], TARGET_US
    while edge > 1:
        # ceil(edge / 1.01) keeps each step within 1%; below 100 us that is every microsecond.
        edge = min(-(-edge * 100 // 101), edge - 1)
        down.append(edge)
    up, edge = [], TARGET_US
    while edge < _YEAR_US:
        edge = edge * 101 // 100  # floor: within 1% again
        up.append(edge)
    return [0, *reversed(down), TARGET_US, *up]


EDGES = _edges()
TARGET_BUCKET = EDGES.index(TARGET_US)


def bucket_of(latency_us: int) -> int:
    """Bucket index of a latency in microseconds: EDGES[i-1] < latency_us <= EDGES[i]."""
    return min(bisect.bisect_left(EDGES, latency_us), len(EDGES) - 1)


def latency_us(start: datetime, ledgered: datetime) -> int:
    return (ledgered - start) // timedelta(microseconds=1)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _ceil(moment: datetime, floor: Callable[[datetime], datetime], step: timedelta) -> datetime:
    low = floor(moment)
    return low if low == moment else low + step


# --- writing ------------------------------------------------------------------------------------

def _upsert(conn, model, key: str, rows: list[dict]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    table = model.__table__
    stmt = dialect_insert(table)
    keys = [key, "bucket"] if "bucket" in table.c else [key]
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_={"n": table.c.n + stmt.excluded.n}), rows)


def record(events: Iterable[tuple[datetime, datetime | None, datetime]], sign: int = 1, conn=None) -> int:
    """Count ledgered events: (received_at, matchable_at or None, ledgered_at) each, aware UTC.
    In the caller's transaction (`conn`, default the session's). Returns how many were counted."""
    per_hour: Counter = Counter()
    for received, matchable, ledgered in events:
        per_hour[floor_hour(received), bucket_of(latency_us(matchable or received, ledgered))] += sign
    if not per_hour:
        return 0
    per_day: Counter = Counter()
    for (hour, bucket), n in per_hour.items():
        per_day[floor_day(hour), bucket] += n
    conn = conn if conn is not None else db.session.connection()
    _upsert(conn, KajabiLatencyHour, "hour", [{"hour": h, "bucket": b, "n": n} for (h, b), n in sorted(per_hour.items())])
    _upsert(conn, KajabiLatencyDay, "day", [{"day": d, "bucket": b, "n": n} for (d, b), n in sorted(per_day.items())])
    return sum(per_hour.values())


def count_states(deltas: dict[str, int], conn=None) -> None:
    """Add `deltas` ({state: +-n}) to the per-state counts, in the caller's transaction."""
    rows = [{"state": s, "n": n} for s, n in sorted(deltas.items()) if n and s != UNCOUNTED_STATE]
    if rows:
        _upsert(conn if conn is not None else db.session.connection(), KajabiStateCount, "state", rows)


@event.listens_for(Session, "after_flush")
def _count_orm_writes(session, _context) -> None:
    """Every KajabiEvent the ORM inserted, deleted or moved (state, ledgered_at) is counted in the
    flush's own transaction. History is still the flush's here (SQLAlchemy after_flush)."""
    ledgered, states = [], Counter()
    for obj in session.new:
        if isinstance(obj, KajabiEvent):
            states[obj.state] += 1
            if obj.ledgered_at is not None:
                ledgered.append((obj.received_at, obj.matchable_at, obj.ledgered_at, 1))
    for obj in session.dirty:
        if not isinstance(obj, KajabiEvent):
            continue
        state = attributes.get_history(obj, "state")
        if state.added and state.deleted and state.added[0] != state.deleted[0]:
            states[state.added[0]] += 1
            states[state.deleted[0]] -= 1
        when = attributes.get_history(obj, "ledgered_at")
        if when.added and (when.deleted or [None])[0] != when.added[0]:
            for value, sign in ((when.deleted or [None])[0], -1), (when.added[0], 1):
                if value is not None:
                    ledgered.append((obj.received_at, obj.matchable_at, value, sign))
    for obj in session.deleted:
        if isinstance(obj, KajabiEvent):
            states[obj.state] -= 1
            if obj.ledgered_at is not None:
                ledgered.append((obj.received_at, obj.matchable_at, obj.ledgered_at, -1))
    if not ledgered and not any(states.values()):
        return
    conn = session.connection()
    for sign in (1, -1):
        record([row[:3] for row in ledgered if row[3] == sign and row[0] is not None], sign, conn)
    count_states(states, conn)


# --- reading ------------------------------------------------------------------------------------

def _exact_latencies(start: datetime, end: datetime) -> list[int]:
    """Latencies (us) of the events received in [start, end) and ledgered: read from the events."""
    where = (KajabiEvent.ledgered_at.is_not(None), KajabiEvent.received_at >= start, KajabiEvent.received_at < end)
    begin = func.coalesce(KajabiEvent.matchable_at, KajabiEvent.received_at)
    if is_postgres():
        micros = cast(func.round(func.extract("epoch", KajabiEvent.ledgered_at - begin) * 1_000_000), BigInteger)
        return list(db.session.scalars(select(micros).where(*where)))
    return [latency_us(b, ledgered) for b, ledgered in db.session.execute(select(begin, KajabiEvent.ledgered_at).where(*where))]


def counts_since(since: datetime) -> Counter:
    """{bucket: events} of the events received at or after `since` and ledgered: whole days from
    the day table, whole hours before the first whole day from the hour table, and the part hour
    before the first whole hour exactly from the events (a short range of the received_at index)."""
    first_hour = _ceil(since, floor_hour, HOUR)
    first_day = _ceil(first_hour, floor_day, DAY)
    counts = Counter(bucket_of(us) for us in _exact_latencies(since, first_hour)) if since < first_hour else Counter()
    for model, column, where in (
            (KajabiLatencyHour, KajabiLatencyHour.hour, (KajabiLatencyHour.hour >= first_hour, KajabiLatencyHour.hour < first_day)),
            (KajabiLatencyDay, KajabiLatencyDay.day, (KajabiLatencyDay.day >= first_day,))):
        for bucket, n in db.session.execute(select(model.bucket, func.sum(model.n)).where(*where).group_by(model.bucket)):
            counts[bucket] += int(n)
    return counts


def _value_us(bucket: int) -> int:
    return EDGES[bucket]


def summarise(counts: Counter, quantiles=(0.5, 0.95, 0.99)) -> tuple[int, int, list[float | None]]:
    """(events, events within 60 s, [latency seconds at each quantile, 3 decimals]) of a
    {bucket: events} histogram. Quantiles interpolate between ranks as percentile_cont does."""
    buckets = sorted((b, n) for b, n in counts.items() if n > 0)
    total = sum(n for _, n in buckets)
    within = sum(n for b, n in buckets if b <= TARGET_BUCKET)
    if not total:
        return 0, 0, [None for _ in quantiles]
    cumulative, running = [], 0
    for _, n in buckets:
        running += n
        cumulative.append(running)

    def at_rank(rank: int) -> int:  # 0-based rank -> estimated latency (us)
        return _value_us(buckets[bisect.bisect_right(cumulative, rank)][0])

    results = []
    for q in quantiles:
        position = q * (total - 1)
        low = int(position)
        value = at_rank(low)
        if position > low:
            value = value + (at_rank(low + 1) - value) * (position - low)
        results.append(round(value / 1_000_000, 3))
    return total, within, results


def state_counts() -> dict[str, int]:
    """{state: events}, as a GROUP BY over kajabi_events would give (states with none left out)."""
    counts = {s: int(n) for s, n in db.session.execute(select(KajabiStateCount.state, KajabiStateCount.n)) if n}
    received = db.session.scalar(select(func.count()).select_from(KajabiEvent)
                                 .where(KajabiEvent.state == UNCOUNTED_STATE)) or 0
    if received:
        counts[UNCOUNTED_STATE] = received
    return counts


# --- rebuilding (flask slo backfill) ------------------------------------------------------------

def hours_to_rebuild(days: int, now: datetime | None = None) -> list[datetime]:
    """Every hour from `days` days before now to the current hour, oldest first."""
    last = floor_hour(now or utcnow())
    first = floor_hour(last - timedelta(days=days))
    return [first + i * HOUR for i in range(int((last - first) / HOUR) + 1)]


def rebuild_hour(hour: datetime) -> int:
    """Recount one hour of receipt from the events, replacing its rows, then its day's rows from
    its hours; commits. Exact under concurrent ledgering: on PostgreSQL the two tables are locked
    against writers (EXCLUSIVE: reads go on; a drain's upsert waits, for about the time it takes
    to read an hour of events), so every drain either committed before the read or counts after
    it. On SQLite the first DELETE takes the database's write lock. Returns the events counted."""
    hour = floor_hour(hour)
    day = floor_day(hour)
    if is_postgres():
        db.session.execute(text("LOCK TABLE kajabi_latency_hist, kajabi_latency_hist_day IN EXCLUSIVE MODE"))
    db.session.execute(delete(KajabiLatencyHour).where(KajabiLatencyHour.hour == hour))
    counts = Counter(bucket_of(us) for us in _exact_latencies(hour, hour + HOUR))
    if counts:
        db.session.execute(insert(KajabiLatencyHour), [{"hour": hour, "bucket": b, "n": n} for b, n in sorted(counts.items())])
    db.session.execute(delete(KajabiLatencyDay).where(KajabiLatencyDay.day == day))
    day_rows = db.session.execute(select(KajabiLatencyHour.bucket, func.sum(KajabiLatencyHour.n))
                                  .where(KajabiLatencyHour.hour >= day, KajabiLatencyHour.hour < day + DAY)
                                  .group_by(KajabiLatencyHour.bucket)).all()
    if day_rows:
        db.session.execute(insert(KajabiLatencyDay), [{"day": day, "bucket": b, "n": int(n)} for b, n in day_rows])
    db.session.commit()
    return sum(counts.values())


def rebuild_state_counts() -> dict[str, int]:
    """Recount events per state with one GROUP BY over every event (seconds at 10M); commits.
    On PostgreSQL the counts table is locked against writers meanwhile, as rebuild_hour does."""
    if is_postgres():
        db.session.execute(text("LOCK TABLE kajabi_state_counts IN EXCLUSIVE MODE"))
    db.session.execute(delete(KajabiStateCount))
    rows = db.session.execute(select(KajabiEvent.state, func.count()).where(KajabiEvent.state != UNCOUNTED_STATE)
                              .group_by(KajabiEvent.state)).all()
    if rows:
        db.session.execute(insert(KajabiStateCount), [{"state": s, "n": n} for s, n in rows])
    db.session.commit()
    return dict(rows)
