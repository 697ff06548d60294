"""Aggregate points by activity for a period, from daily_rollups, with a short Redis cache.

Periods (UTC days, today included): `day` = today, `week` = the last 7 days, `month` = the last
30 days, `all` = everything (the default). The body is serialised once, so its bytes, the cache
and the strong ETag always agree.
"""
from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta

from sqlalchemy import func, select

from core.platform.db import db, utcnow
from core.platform.errors import ValidationError
from core.platform.models import DailyRollup

PERIOD_DAYS = {"day": 1, "week": 7, "month": 30, "all": None}
CACHE_SECONDS = 30
CACHE_CONTROL = "public, s-maxage=1800, stale-while-revalidate=60"


def period_start(period: str, today: date) -> date | None:
    if period not in PERIOD_DAYS:
        raise ValidationError("invalid_period", f"period must be one of {', '.join(PERIOD_DAYS)}.",
                              [{"field": "period", "issue": period}])
    days = PERIOD_DAYS[period]
    return None if days is None else today - timedelta(days=days - 1)


def aggregate(period: str = "all", today: date | None = None) -> dict:
    today = today or utcnow().date()
    start = period_start(period, today)
    query = (select(DailyRollup.activity_code, func.sum(DailyRollup.points), func.sum(DailyRollup.events))
             .group_by(DailyRollup.activity_code).order_by(DailyRollup.activity_code))
    if start is not None:
        query = query.where(DailyRollup.day >= start, DailyRollup.day <= today)
    activities = [{"activity_code": code, "points": int(points or 0), "events": int(events or 0)}
                  for code, points, events in db.session.execute(query)]
    return {"period": period, "from": start.isoformat() if start else None, "to": today.isoformat(),
            "total_points": sum(a["points"] for a in activities), "activities": activities}


def etag_for(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def cached_body(period: str) -> bytes:
    """The serialised aggregate, from Redis when fresh; rollups move once a minute anyway."""
    from core.platform.services import services

    svc = services()
    period_start(period, utcnow().date())  # validate before touching the cache
    key = f"{svc.settings.queue_prefix}stats:{period}"
    try:
        hit = svc.redis.get(key)
    except Exception:
        hit = None
    if hit:
        return hit
    body = json.dumps(aggregate(period), sort_keys=True, separators=(",", ":")).encode()
    try:
        svc.redis.set(key, body, ex=CACHE_SECONDS)
    except Exception:  # the cache is an optimisation; the database answers without it
        pass
    return body
