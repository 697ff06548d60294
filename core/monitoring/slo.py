"""The SLO summary behind /api/slo and the gauges behind /metrics.

Everything is read from the database (and Redis for the alert's "for 15 minutes"), so every web
process answers the same, however many there are. The Kajabi figure and the per-state counts are
read from pre-aggregated tables (core.points.latency_hist: a few thousand rows at any number of
events, instead of a percentile over every event of the window, 0.7 s at a million); they are
still kept in Redis for a minute, so however many scrapers and dashboards ask, they are computed
once a minute. What the alerts read (backlogs and their ages) is always live.

kajabi_to_ledger_reference() is the scan over the events the histogram replaced: the definition
the histogram is tested against (tests/test_slo_histogram.py) and `flask slo verify` runs.
"""
from __future__ import annotations

import json
import logging
import math
import statistics
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import func, select

from core.platform.db import db, is_postgres, utcnow
from core.platform.models import EvidenceFile, KajabiEvent, OutboxRecord, Submission
from core.points import latency_hist

OBJECTIVE = 0.999
TARGET_SECONDS = 60
WINDOW = timedelta(days=28)
ALERT_FOR = timedelta(minutes=15)
CACHE_SECONDS = 60  # a 28-day ratio barely moves in a minute; alerts wait 5 minutes or more

log = logging.getLogger(__name__)


def _age_seconds(oldest: datetime | None, now: datetime) -> float | None:
    if oldest is None:
        return None
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)
    return round(max(0.0, (now - oldest).total_seconds()), 3)


# Tag -> ledger latency counts from when the event could be matched: its arrival, or the creation
# of the user or tag mapping that matched it (kajabi_events.matchable_at, core.points.kajabi.
# matchable_at). Waiting for someone to sign up is the unmatched queue's, with its own alert.
MATCHABLE = func.coalesce(KajabiEvent.matchable_at, KajabiEvent.received_at)


def _latencies_postgres(since: datetime) -> tuple[int, int, list[float | None]]:
    seconds = func.extract("epoch", KajabiEvent.ledgered_at - MATCHABLE)
    row = db.session.execute(
        select(func.count(), func.count().filter(seconds <= TARGET_SECONDS),
               func.percentile_cont(0.5).within_group(seconds),
               func.percentile_cont(0.95).within_group(seconds),
               func.percentile_cont(0.99).within_group(seconds))
        .where(KajabiEvent.ledgered_at.is_not(None), KajabiEvent.received_at >= since)
    ).one()
    return row[0], row[1], [None if v is None else round(float(v), 3) for v in row[2:]]


def _latencies_portable(since: datetime) -> tuple[int, int, list[float | None]]:
    rows = db.session.execute(
        select(MATCHABLE, KajabiEvent.ledgered_at)
        .where(KajabiEvent.ledgered_at.is_not(None), KajabiEvent.received_at >= since)
    ).all()
    durations = sorted((ledgered - received).total_seconds() for received, ledgered in rows)
    if not durations:
        return 0, 0, [None, None, None]
    within = sum(1 for d in durations if d <= TARGET_SECONDS)
    if len(durations) == 1:
        qs = [durations[0]] * 3
    else:
        cuts = statistics.quantiles(durations, n=100, method="inclusive")
        qs = [statistics.median(durations), cuts[94], cuts[98]]
    return len(durations), within, [round(q, 3) for q in qs]


def _latencies_scan(since: datetime) -> tuple[int, int, list[float | None]]:
    return (_latencies_postgres if is_postgres() else _latencies_portable)(since)


def kajabi_to_ledger(now: datetime | None = None, window: timedelta = WINDOW) -> dict:
    """{events, within_60s, ratio, p50/p95/p99_seconds, objective, met, window_days,
    window_seconds, computed_at} over the events received in the `window` before `now`.
    From the pre-aggregated histogram: counts and ratio exact, percentiles at most 1% above the
    exact figure (core.points.latency_hist.RELATIVE_ERROR), in a few ms at 10M events."""
    return kajabi_to_ledger_windows({"window": window}, now)["window"]


def kajabi_to_ledger_windows(windows: dict[str, timedelta], now: datetime | None = None) -> dict[str, dict]:
    """{label: kajabi_to_ledger(now, window)} for every window, read together: one statement for
    the histograms and one for the late events, whatever the number of windows (a scrape needs
    five)."""
    now = now or utcnow()
    sinces = [now - window for window in windows.values()]
    counts = latency_hist.counts_since_many(sinces)
    lates = _late_counts(sinces, now)
    return {label: _assemble(now, window, latency_hist.summarise(histogram), late)
            for (label, window), histogram, late in zip(windows.items(), counts, lates)}


def kajabi_to_ledger_reference(now: datetime | None = None, window: timedelta = WINDOW) -> dict:
    """kajabi_to_ledger() computed from every event of the window (percentile_cont on
    PostgreSQL): exact, and 0.7 s at a million events. The reference the histogram is checked against."""
    now = now or utcnow()
    since = now - window
    return _assemble(now, window, _latencies_scan(since), _late_counts([since], now)[0])


def _late_counts(sinces: list[datetime], now: datetime) -> list[int]:
    """Per start: events received since then and still waiting past the target, already a miss
    even before they land. One statement over the (state, received_at) index."""
    cutoff = now - timedelta(seconds=TARGET_SECONDS)
    row = db.session.execute(
        select(*[func.count().filter(KajabiEvent.received_at >= since) for since in sinces])
        .where(KajabiEvent.state == "received", KajabiEvent.received_at >= min(sinces),
               KajabiEvent.received_at < cutoff)).one()
    return [int(n or 0) for n in row]


def _assemble(now: datetime, window: timedelta, latencies: tuple[int, int, list[float | None]], late: int) -> dict:
    done, within, (p50, p95, p99) = latencies
    events = done + late
    ratio = round(within / events, 6) if events else 1.0
    return {"events": events, "within_60s": within, "ratio": ratio, "p50_seconds": p50, "p95_seconds": p95,
            "p99_seconds": p99, "objective": OBJECTIVE, "met": ratio >= OBJECTIVE, "window_days": window.days,
            "window_seconds": int(window.total_seconds()), "computed_at": now.isoformat()}


def differences(now: datetime | None = None, window: timedelta = WINDOW) -> tuple[dict, dict, list[str]]:
    """(histogram figure, reference figure, what differs beyond the histogram's stated error):
    events, within_60s and ratio must be equal; each percentile within RELATIVE_ERROR above the
    reference, plus rounding to 3 decimals. Both at the same `now`."""
    now = now or utcnow()
    fast, exact = kajabi_to_ledger(now, window), kajabi_to_ledger_reference(now, window)
    problems = [f"{key}: histogram {fast[key]} != events {exact[key]}"
                for key in ("events", "within_60s", "ratio") if fast[key] != exact[key]]
    for key in ("p50_seconds", "p95_seconds", "p99_seconds"):
        got, want = fast[key], exact[key]
        if (got is None) != (want is None) or (want is not None and not (
                want - 0.001 <= got <= max(want, 0) * (1 + latency_hist.RELATIVE_ERROR) + 0.0015)):
            problems.append(f"{key}: histogram {got} not within {latency_hist.RELATIVE_ERROR:.0%} above events {want}")
    return fast, exact, problems


def _count_and_oldest(model, column, *conditions, now: datetime) -> tuple[int, float | None]:
    count, oldest = db.session.execute(select(func.count(), func.min(column)).select_from(model).where(*conditions)).one()
    return count or 0, _age_seconds(oldest, now)


def queued_unmatched(redis, threshold: int, now: datetime | None = None, key_prefix: str = "") -> dict:
    """alert_firing once the backlog has stayed above the threshold for more than 15 minutes.
    The first time it is seen above, the moment is kept in Redis; dropping below clears it."""
    now = now or utcnow()
    count, oldest_age = _count_and_oldest(KajabiEvent, KajabiEvent.received_at,
                                          KajabiEvent.state == "queued_unmatched", now=now)
    key = f"{key_prefix}slo:unmatched_over_since"
    over_since = None
    try:
        if count > threshold:
            redis.set(key, now.timestamp(), nx=True)
            raw = redis.get(key)
            over_since = datetime.fromtimestamp(float(raw), tz=now.tzinfo) if raw else now
        else:
            redis.delete(key)
    except RedisError:
        # Without Redis the "since when" is unknown: the count is still live, the alert not firing
        # (the RedisDown and readiness alerts speak for this), never a 500 on the SLO endpoints.
        log.warning("SLO alert memory unreachable in Redis", exc_info=True)
        over_since = None
    firing = over_since is not None and now - over_since >= ALERT_FOR
    return {"count": count, "oldest_age_s": oldest_age, "threshold": threshold, "alert_firing": firing,
            "over_threshold_since": over_since.isoformat() if over_since else None}


def outbox(now: datetime | None = None) -> dict:
    now = now or utcnow()
    pending, oldest = _count_and_oldest(OutboxRecord, OutboxRecord.created_at, OutboxRecord.status == "pending", now=now)
    dead = db.session.scalar(select(func.count()).select_from(OutboxRecord).where(OutboxRecord.status == "dead")) or 0
    return {"pending": pending, "oldest_age_s": oldest, "dead": dead}


def scans(now: datetime | None = None) -> dict:
    now = now or utcnow()
    pending, oldest = _count_and_oldest(EvidenceFile, EvidenceFile.created_at, EvidenceFile.scan_state == "pending",
                                        EvidenceFile.deleted_at.is_(None), now=now)
    return {"pending": pending, "oldest_age_s": oldest}


def _number(value) -> bool:
    """A finite number a gauge can hold: not a bool, NaN, infinity or an int past a float's range
    (prometheus_client turns each value into a float; /api/slo must stay valid JSON)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def is_figure(value) -> bool:
    """Is `value` a kajabi_to_ledger() figure as cached (numbers where numbers go)? Anything else
    found in the cache (null, [], a hand-edited key) is computed again, never served."""
    return (isinstance(value, dict) and all(_number(value.get(k)) for k in ("events", "within_60s", "ratio"))
            and all(k in value and (value[k] is None or _number(value[k]))
                    for k in ("p50_seconds", "p95_seconds", "p99_seconds")))


def is_count_map(value, *names: str) -> bool:
    """{name: {label: count}} for each of `names` (none: {label: count} itself)."""
    def counts(v) -> bool:
        return isinstance(v, dict) and all(isinstance(k, str) and _number(n) for k, n in v.items())
    return isinstance(value, dict) and all(counts(value.get(n)) for n in names) if names else counts(value)


def _cached(redis, key: str, compute, valid=lambda value: isinstance(value, dict)) -> dict:
    """compute() as it was at most CACHE_SECONDS ago, shared by every process through Redis.
    Without Redis it is computed every time rather than not at all; a cached value that is not
    JSON or fails `valid` is computed again."""
    try:
        raw = redis.get(key)
        if raw:
            value = json.loads(raw)
            if valid(value):
                return value
    except (RedisError, ValueError):
        log.warning("SLO cache unreadable; computing", exc_info=True)
    value = compute()
    try:
        redis.set(key, json.dumps(value), ex=CACHE_SECONDS)
    except RedisError:
        log.warning("SLO cache unwritable", exc_info=True)
    return value


def _window_key(key_prefix: str, window: timedelta) -> str:
    return f"{key_prefix}slo:kajabi_to_ledger" + ("" if window == WINDOW else f":{int(window.total_seconds())}s")


def kajabi_to_ledger_cached(redis, key_prefix: str = "", window: timedelta = WINDOW) -> dict:
    """kajabi_to_ledger() at most a minute old; its `computed_at` says when. One cache per window."""
    return kajabi_to_ledger_cached_windows(redis, {"window": window}, key_prefix)["window"]


def kajabi_to_ledger_cached_windows(redis, windows: dict[str, timedelta], key_prefix: str = "") -> dict[str, dict]:
    """{label: kajabi_to_ledger_cached(window)}: the windows not in the cache are computed
    together (kajabi_to_ledger_windows) and cached each under its own key, the one
    /api/slo?window= reads too. Without Redis, all are computed."""
    keys = {label: _window_key(key_prefix, window) for label, window in windows.items()}
    found: dict[str, dict] = {}
    try:
        for label, raw in zip(keys, redis.mget(list(keys.values()))):
            value = json.loads(raw) if raw else None
            if is_figure(value):
                found[label] = value
    except (RedisError, ValueError):
        log.warning("SLO cache unreadable; computing", exc_info=True)
        found = {}
    missing = {label: window for label, window in windows.items() if label not in found}
    if missing:
        computed = kajabi_to_ledger_windows(missing)
        try:
            with redis.pipeline(transaction=False) as pipe:
                for label, value in computed.items():
                    pipe.set(keys[label], json.dumps(value), ex=CACHE_SECONDS)
                pipe.execute()
        except RedisError:
            log.warning("SLO cache unwritable", exc_info=True)
        found.update(computed)
    return {label: found[label] for label in windows}


def table_counts_cached(redis, key_prefix: str = "") -> dict:
    """Kajabi events per state and submissions per status, at most a minute old, for dashboards
    (alerts read the live counts above). Kajabi states come from the counts table kept with the
    events (core.points.latency_hist.state_counts); submissions are still a whole-table count
    (about 80 ms at a million)."""
    def compute() -> dict:
        return {"kajabi_events": latency_hist.state_counts(),
                "submissions": dict(db.session.execute(
                    select(Submission.status, func.count()).group_by(Submission.status)).all())}

    return _cached(redis, f"{key_prefix}slo:table_counts", compute,
                   lambda value: is_count_map(value, "kajabi_events", "submissions"))


def summary(redis, threshold: int, key_prefix: str = "", now: datetime | None = None,
            window: timedelta = WINDOW) -> dict:
    """With `now` (tests, what-if), everything is computed for that moment; without, the Kajabi
    figure may be up to a minute old. `window`: how far back the Kajabi figure looks."""
    k2l = kajabi_to_ledger(now, window) if now else kajabi_to_ledger_cached(redis, key_prefix, window)
    now = now or utcnow()
    return {
        "generated_at": now.isoformat(),
        "kajabi_to_ledger": k2l,
        "queued_unmatched": queued_unmatched(redis, threshold, now, key_prefix),
        "outbox": outbox(now),
        "scans": scans(now),
    }
