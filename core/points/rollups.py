"""daily_rollups: points, events and distinct users per (UTC day of event_time, activity).

Recomputed from the ledger for the days touched, never incremented, so running a refresh twice
or concurrently with a rebuild converges on the same numbers.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import Date, cast, delete, func, select, text

from core.platform.db import db, is_postgres, utcnow
from core.platform.models import DailyRollup, LedgerEntry

WATERMARK_KEY = "rollups:watermark"
LOCK_NAMESPACE = 7_402
# Rows created a little before the last run may have committed after it (long transactions).
OVERLAP = timedelta(minutes=5)


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=timezone.utc)
    try:
        return start, start + timedelta(days=1)
    except OverflowError:  # 9999-12-31: the last day there is (a row stored before dates were bounded)
        return start, datetime.max.replace(tzinfo=timezone.utc)


def _day_expr():
    if is_postgres():
        return cast(func.timezone("UTC", LedgerEntry.event_time), Date)
    return func.date(LedgerEntry.event_time)  # SQLite keeps naive UTC text


def refresh(days: Iterable[date]) -> int:
    """Recompute the given days (caller commits). Returns the number of rollup rows written."""
    if is_postgres():  # one refresher at a time, or two could insert the same (day, activity)
        db.session.execute(text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": LOCK_NAMESPACE})
    written = 0
    for day in sorted(set(days)):
        start, end = _day_bounds(day)
        db.session.execute(delete(DailyRollup).where(DailyRollup.day == day))
        rows = db.session.execute(
            select(LedgerEntry.activity_code, func.sum(LedgerEntry.delta_points), func.count(),
                   func.count(LedgerEntry.user_id.distinct()))
            .where(LedgerEntry.event_time >= start, LedgerEntry.event_time < end)
            .group_by(LedgerEntry.activity_code)).all()
        stamp = utcnow()
        for code, points, events, users in rows:
            db.session.add(DailyRollup(day=day, activity_code=code, points=int(points or 0), events=events,
                                       users=users, updated_at=stamp))
            written += 1
    db.session.flush()
    return written


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def touched_days(created_since: datetime | None) -> set[date]:
    query = select(_day_expr()).distinct()
    if created_since is not None:
        query = query.where(LedgerEntry.created_at >= created_since)
    return {_as_date(d) for d in db.session.scalars(query) if d is not None}


def refresh_recent() -> int:
    """Refresh the days touched by ledger rows created since the last run (Redis watermark)."""
    from core.platform.services import services

    svc = services()
    key = f"{svc.settings.queue_prefix}{WATERMARK_KEY}"
    started = utcnow()
    raw = svc.redis.get(key)
    since = datetime.fromisoformat(raw.decode()) - OVERLAP if raw else None
    written = refresh(touched_days(since))
    db.session.commit()
    svc.redis.set(key, started.isoformat())
    return written


def rebuild(since: date | None = None, progress=None) -> int:
    """Drop and recompute every rollup from `since` (all when None). Commits per day."""
    query = delete(DailyRollup)
    if since is not None:
        query = query.where(DailyRollup.day >= since)
    db.session.execute(query)
    days = touched_days(None)
    if since is not None:
        days = {d for d in days if d >= since}
    written = 0
    for day in sorted(days):
        written += refresh([day])
        db.session.commit()
        if progress:
            progress(1)
    db.session.commit()
    return written
