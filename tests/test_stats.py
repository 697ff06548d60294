"""GET /api/stats: rollups by period, the exact cache headers, a strong ETag, 304."""
from __future__ import annotations

from datetime import timedelta

from core.points import catalogue, ledger, rollups
from core.accounts.users import create_user
from core.platform.db import db, utcnow
from core.points.stats import CACHE_SECONDS

CACHE_CONTROL = "public, s-maxage=1800, stale-while-revalidate=60"


def _seed(app):
    with app.app_context():
        catalogue.seed_catalogue()
        uid = create_user("s@example.com", "uploader")[0].id
        now = utcnow()
        ledger.record(uid, "EXPLORE", "submission", "sub-1", now)
        ledger.record(uid, "LEARN", "backfill", "old-1", now - timedelta(days=20))
        ledger.record(uid, "LEARN", "backfill", "old-2", now - timedelta(days=100))
        db.session.commit()
        assert rollups.refresh_recent() == 3
        assert rollups.rebuild() == 3  # same numbers from scratch


def test_headers_etag_and_304(app, client):
    _seed(app)
    response = client.get("/api/stats")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == CACHE_CONTROL
    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    body = response.get_json()
    assert body["period"] == "all" and body["total_points"] == 70
    assert {a["activity_code"]: a["points"] for a in body["activities"]} == {"EXPLORE": 50, "LEARN": 20}

    again = client.get("/api/stats", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["Cache-Control"] == CACHE_CONTROL and again.headers["ETag"] == etag
    assert client.get("/api/stats", headers={"If-None-Match": '"other", ' + etag}).status_code == 304
    assert client.get("/api/stats", headers={"If-None-Match": '"other"'}).status_code == 200


def test_periods_and_bad_period(app, client):
    _seed(app)
    week = client.get("/api/stats?period=week").get_json()
    month = client.get("/api/stats?period=month").get_json()
    day = client.get("/api/stats?period=day").get_json()
    assert (day["total_points"], week["total_points"], month["total_points"]) == (50, 50, 60)
    assert client.get("/api/stats?period=week").headers["ETag"] != client.get("/api/stats").headers["ETag"]
    bad = client.get("/api/stats?period=year")
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_period"


def test_body_is_cached_briefly_in_redis(app, client, redis_conn):
    _seed(app)
    first = client.get("/api/stats")
    assert redis_conn.get("stats:all") == first.data
    assert 0 < redis_conn.ttl("stats:all") <= CACHE_SECONDS
    with app.app_context():
        uid = create_user("t@example.com", "uploader")[0].id
        ledger.record(uid, "PRESENT", "submission", "sub-2", utcnow())
        db.session.commit()
        rollups.refresh_recent()
    cached = client.get("/api/stats")  # within the cache's life: the same body, the new points not yet
    assert cached.data == first.data and cached.headers["ETag"] == first.headers["ETag"]
    redis_conn.delete("stats:all")  # as when the entry expires
    second = client.get("/api/stats")
    assert second.get_json()["total_points"] == 90 and second.headers["ETag"] != first.headers["ETag"]
