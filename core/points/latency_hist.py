"""Pre-aggregated Kajabi figures behind /api/slo and /metrics: tag -> ledger latencies per
5-minute slot, hour and day of receipt, and events per state, so that a 28-day figure at 10M
events reads some tens of thousands of rows instead of every event (issue 18, goal 4).

A window [since, now] is read as: the part before the first whole 5-minute slot exactly from the
events (at most 5 minutes: about 1,200 events at 10M a month), then 5-minute rows up to the first
whole hour, hour rows up to the first whole day, and day rows. The 5-minute and hour rows are
only read within 28 days (the longest window, core.monitoring.windows), so trim() drops them
after KEEP_FINE (scheduled hourly); day rows are kept.

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
Nothing moves received_at or matchable_at of a ledgered event; if something did, the histogram
would not follow (`flask slo verify` would say so, `flask slo backfill` would recount).
Rows are upserted (`n = n + excluded.n`) in key order, hour table before day table before
counts, so concurrent drains never deadlock on them; each drain holds them only from its last
statement to its commit.

Per-state counts: a counts table kept in those same transactions, not a GROUP BY over every event
(about 1 s at 10M). `received` is not kept: every webhook inserts one, and one counter row would
serialise the webhook's inserts; it is a small backlog, counted live on (state, received_at).
"""
from __future__ import annotations

import bisect
import contextlib
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, cast, delete, event, func, insert, literal, select, text, union_all
from sqlalchemy.orm import Session, attributes

from core.platform.db import db, is_postgres, utcnow
from core.platform.models import KajabiEvent, KajabiLatency5m, KajabiLatencyDay, KajabiLatencyHour, KajabiStateCount

TARGET_US = 60_000_000  # core.monitoring.slo.TARGET_SECONDS, an exact edge
RELATIVE_ERROR = 0.01
_YEAR_US = 366 * 86400 * 1_000_000
SLOT, HOUR, DAY = timedelta(minutes=5), timedelta(hours=1), timedelta(days=1)
KEEP_FINE = timedelta(days=35)  # 5-minute and hour rows: the 28-day window and a week to spare
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


def floor_slot(moment: datetime) -> datetime:
    return moment.replace(minute=moment.minute - moment.minute % 5, second=0, microsecond=0)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _ceil(moment: datetime, floor: Callable[[datetime], datetime], step: timedelta) -> datetime:
    low = floor(moment)
    return low if low == moment else low + step


# (model, its time column, slot length, floor): finest first.
GRAINS = ((KajabiLatency5m, "start", SLOT, floor_slot), (KajabiLatencyHour, "hour", HOUR, floor_hour),
          (KajabiLatencyDay, "day", DAY, floor_day))


# --- writing ------------------------------------------------------------------------------------

def _upsert(conn, model, key: str, rows: list[dict]) -> None:
    if not rows:
        return
    table = model.__table__
    keys = [key, "bucket"] if "bucket" in table.c else [key]
    if conn.dialect.name == "postgresql":  # one statement with an array per column (executemany sent one per row)
        kinds = {key: "text" if key == "state" else "timestamptz", "bucket": "int", "n": "bigint"}
        names = ", ".join(keys)
        arrays = ", ".join(f"%({c})b::{kinds[c]}[]" for c in keys + ["n"])
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}, n) SELECT * FROM unnest({arrays}) ON CONFLICT ({names}) "
                             f"DO UPDATE SET n = {table.name}.n + excluded.n", {c: [r[c] for r in rows] for c in keys + ["n"]})
        return
    from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(table)
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_={"n": table.c.n + stmt.excluded.n}), rows)


def record(events: Iterable[tuple[datetime, datetime | None, datetime]], sign: int = 1, conn=None) -> int:
    """Count ledgered events: (received_at, matchable_at or None, ledgered_at) each, aware UTC.
    In the caller's transaction (`conn`, default the session's). Returns how many were counted."""
    finest: Counter = Counter()
    for received, matchable, ledgered in events:
        finest[received, bucket_of(latency_us(matchable or received, ledgered))] += sign
    if not finest:
        return 0
    conn = conn if conn is not None else db.session.connection()
    for model, column, _, floor in GRAINS:
        rows: Counter = Counter()
        for (moment, bucket), n in finest.items():
            rows[floor(moment), bucket] += n
        _upsert(conn, model, column, [{column: m, "bucket": b, "n": n} for (m, b), n in sorted(rows.items())])
    return sum(finest.values())


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

def _latency_us_sql():
    begin = func.coalesce(KajabiEvent.matchable_at, KajabiEvent.received_at)
    return cast(func.round(func.extract("epoch", KajabiEvent.ledgered_at - begin) * 1_000_000), BigInteger)


def _received_between(start: datetime, end: datetime) -> tuple:
    return KajabiEvent.ledgered_at.is_not(None), KajabiEvent.received_at >= start, KajabiEvent.received_at < end


def _exact_latencies(start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """(received_at, latency us) of the events received in [start, end) and ledgered, from the events."""
    where = _received_between(start, end)
    if is_postgres():
        return [tuple(row) for row in db.session.execute(select(KajabiEvent.received_at, _latency_us_sql()).where(*where))]
    begin = func.coalesce(KajabiEvent.matchable_at, KajabiEvent.received_at)
    return [(received, latency_us(b, ledgered)) for received, b, ledgered
            in db.session.execute(select(KajabiEvent.received_at, begin, KajabiEvent.ledgered_at).where(*where))]


def counts_since(since: datetime) -> Counter:
    """{bucket: events} of the events received at or after `since` and ledgered (counts_since_many)."""
    return counts_since_many([since])[0]


def counts_since_many(sinces: list[datetime]) -> list[Counter]:
    """One {bucket: events} per start in `sinces`, of the events received at or after it and
    ledgered: for each, the part before the first whole 5-minute slot exactly from the events (a
    short range of the received_at index), then each grain's rows up to the first whole slot of
    the next grain. One statement for every window on PostgreSQL, run without parallel workers:
    a scrape computes five windows, and at 10M events starting workers for a few thousand rows
    cost more than reading them (/metrics 184 -> 79 ms, bench/slo.py, docs/performance.md)."""
    parts, exact_ranges = [], []
    for window, since in enumerate(sinces):
        low = _ceil(since, floor_slot, SLOT)
        exact_ranges.append((since, low))
        for i, (model, column, _, _) in enumerate(GRAINS):
            moment = getattr(model, column)
            tag = literal(window).label("window")
            if i + 1 < len(GRAINS):
                high = _ceil(low, GRAINS[i + 1][3], GRAINS[i + 1][2])
                parts.append(select(tag, model.bucket, model.n).where(moment >= low, moment < high))
                low = high
            else:
                parts.append(select(tag, model.bucket, model.n).where(moment >= low))
    rows = union_all(*parts).subquery()
    summed = select(rows.c.window, literal(False).label("exact"), rows.c.bucket.label("value"),
                    func.sum(rows.c.n).label("n")).group_by(rows.c.window, rows.c.bucket)
    counts: list[Counter] = [Counter() for _ in sinces]
    if is_postgres():
        # The latencies of the part slots come back raw (us), beside the grains' sums: bucketed
        # here, with the one bucket_of.
        exact = [select(literal(window), literal(True), _latency_us_sql(), literal(1)).where(*_received_between(start, end))
                 for window, (start, end) in enumerate(exact_ranges)]
        with _without_parallel_workers():
            result = db.session.execute(union_all(summed, *exact)).all()
        for window, is_exact, value, n in result:
            counts[window][bucket_of(value) if is_exact else value] += int(n)
        return counts
    for window, (start, end) in enumerate(exact_ranges):
        counts[window].update(bucket_of(us) for _, us in _exact_latencies(start, end))
    for window, _, bucket, n in db.session.execute(summed).all():
        counts[window][bucket] += int(n)
    return counts


@contextlib.contextmanager
def _without_parallel_workers():
    """PostgreSQL: the statements inside run without parallel workers, for the rest of them only
    (SET LOCAL, then back to the session's value)."""
    db.session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    yield
    # Not in a finally: after a failed statement the transaction takes no more commands.
    db.session.execute(text("SET LOCAL max_parallel_workers_per_gather TO DEFAULT"))


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


# --- rebuilding (flask slo backfill) and trimming ------------------------------------------------

def hours_to_rebuild(days: int, now: datetime | None = None) -> list[datetime]:
    """Every hour from `days` days before now to the current hour, oldest first."""
    last = floor_hour(now or utcnow())
    first = floor_hour(last - timedelta(days=days))
    return [first + i * HOUR for i in range(int((last - first) / HOUR) + 1)]


def _lock_histogram() -> None:
    if is_postgres():
        db.session.execute(text("LOCK TABLE kajabi_latency_hist_5m, kajabi_latency_hist, kajabi_latency_hist_day "
                                "IN EXCLUSIVE MODE"))


def rebuild_hour(hour: datetime, *, with_day: bool = True) -> int:
    """Recount one hour of receipt from the events, replacing its 5-minute and hour rows, then
    (with_day) its day's rows from the day's hours (rebuild_day); commits. Exact under concurrent
    ledgering: on PostgreSQL the tables are locked against writers (EXCLUSIVE: reads go on; a
    drain's upsert waits, for about the time it takes to read an hour of events), so every drain
    either committed before the read or counts after it. On SQLite the first DELETE takes the
    database's write lock. Returns the events counted. Hours older than KEEP_FINE are refused
    (their day's other hours are trimmed, so the day could not be summed again): ValueError."""
    hour = floor_hour(hour)
    if hour < floor_day(utcnow() - KEEP_FINE) + DAY:
        raise ValueError(f"{hour.isoformat()} is older than the {KEEP_FINE.days} days of hourly rows kept")
    _lock_histogram()
    db.session.execute(delete(KajabiLatency5m).where(KajabiLatency5m.start >= hour, KajabiLatency5m.start < hour + HOUR))
    db.session.execute(delete(KajabiLatencyHour).where(KajabiLatencyHour.hour == hour))
    slots = Counter((floor_slot(received), bucket_of(us)) for received, us in _exact_latencies(hour, hour + HOUR))
    if slots:
        db.session.execute(insert(KajabiLatency5m), [{"start": m, "bucket": b, "n": n} for (m, b), n in sorted(slots.items())])
        per_hour = Counter()
        for (_, bucket), n in slots.items():
            per_hour[bucket] += n
        db.session.execute(insert(KajabiLatencyHour), [{"hour": hour, "bucket": b, "n": n} for b, n in sorted(per_hour.items())])
    if with_day:
        _sum_day(floor_day(hour))
    db.session.commit()
    return sum(slots.values())


def rebuild_day(day: datetime) -> None:
    """Replace a day's rows by the sum of its hour rows, under the same lock; commits."""
    _lock_histogram()
    _sum_day(floor_day(day))
    db.session.commit()


def _sum_day(day: datetime) -> None:
    db.session.execute(delete(KajabiLatencyDay).where(KajabiLatencyDay.day == day))
    day_rows = db.session.execute(select(KajabiLatencyHour.bucket, func.sum(KajabiLatencyHour.n))
                                  .where(KajabiLatencyHour.hour >= day, KajabiLatencyHour.hour < day + DAY)
                                  .group_by(KajabiLatencyHour.bucket)).all()
    if day_rows:
        db.session.execute(insert(KajabiLatencyDay), [{"day": day, "bucket": b, "n": int(n)} for b, n in day_rows])


def rebuild(hours: list[datetime], progress: Callable[[int], None] | None = None) -> int:
    """rebuild_hour for each hour (oldest first), each day's rows once, after its last hour."""
    counted = 0
    for i, hour in enumerate(hours):
        counted += rebuild_hour(hour, with_day=False)
        if i + 1 == len(hours) or floor_day(hours[i + 1]) != floor_day(hour):
            rebuild_day(hour)
        if progress:
            progress(1)
    return counted


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


def vacuum_analyze() -> None:
    """VACUUM (ANALYZE) the tables a backfill just rewrote (PostgreSQL; autovacuum would get there
    later): without it a window reads the dead rows the recount left, and may be planned without
    statistics."""
    if is_postgres():
        db.session.commit()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) kajabi_latency_hist_5m, kajabi_latency_hist, kajabi_latency_hist_day, "
                              "kajabi_state_counts"))


def trim(now: datetime | None = None) -> int:
    """Drop 5-minute and hour rows of events received more than KEEP_FINE ago (no window reads
    them); day rows stay. Commits; returns the rows dropped. Scheduled hourly (jobs.schedule)."""
    cutoff = floor_day((now or utcnow()) - KEEP_FINE)
    dropped = db.session.execute(delete(KajabiLatency5m).where(KajabiLatency5m.start < cutoff)).rowcount
    dropped += db.session.execute(delete(KajabiLatencyHour).where(KajabiLatencyHour.hour < cutoff)).rowcount
    db.session.commit()
    return dropped
