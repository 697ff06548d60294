"""Idempotency that lives with the data: a Redis that loses everything (a Redis of the test's
own, killed and started empty) must not make `flask outbox replay` apply anything twice; the
cache comes back equal to the ledger; the sinks' key records are bounded by the replay horizon."""
from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest
from flask_migrate import upgrade
from sqlalchemy import func, select, update

from app import create_app
from core.accounts.users import create_user
from core.delivery import outbox, sink_keys
from core.platform.db import db, utcnow
from core.platform.models import LedgerEntry, OutboxRecord, SinkKey, User
from core.points import catalogue, ledger
from tests.services.redis_server import own_redis_server  # noqa: F401 - a fixture

USERS = 4


def _seed() -> None:
    catalogue.seed_catalogue()
    now = datetime.now(timezone.utc)
    for n in range(USERS):
        uid = create_user(f"d{n}@example.com", "uploader")[0].id
        for tag in ("elevate-ai-1-completed", "elevate-ai-2-completed"):
            ledger.record(uid, "LEARN", "kajabi", f"kajabi:tag:c{uid}:{tag}", now, tag=tag)
        for i in range(5):
            ledger.record(uid, "AMPLIFY", "submission", f"submission:{uid}-{i}:approved:v1", now,
                          counters={"peers": 2, "students": 3}, session_date=date(2024, 1, 1) + timedelta(days=i))
        db.session.commit()


def _drain() -> None:
    while outbox.deliver_batch(50).claimed:
        pass


def _assert_exactly_once_and_cache_equals_ledger(app, redis) -> None:
    keys = set(db.session.scalars(select(OutboxRecord.idempotency_key)))
    assert set(db.session.scalars(select(OutboxRecord.status))) == {"delivered"}
    with open(app.extensions["points"].settings.analytics_file) as fh:
        written = Counter(json.loads(line)["idempotency_key"] for line in fh)
    assert set(written) == keys and set(written.values()) == {1}, written.most_common(3)
    for uid in db.session.scalars(select(User.id)):
        totals = ledger.user_totals(uid)
        cached = {k.decode(): int(v) for k, v in redis.hgetall(f"cache:user:{uid}:totals").items()}
        assert cached == {"total": totals["total"], **totals["by_activity"]}
        assert int(redis.zscore("cache:leaderboard", uid)) == totals["total"]
        assert {b.decode() for b in redis.smembers(f"cache:user:{uid}:badges")} == {"STARTER"}
    assert not redis.keys("*seen*") and not redis.keys("*inflight*")  # nothing grows in Redis


@pytest.fixture(params=["postgresql", "sqlite"])
def redis_app(request, make_app, make_settings, own_redis_server, tmp_path):
    if request.param == "postgresql":
        yield make_app(REDIS_URL=own_redis_server.url)
        return
    make_app()  # clean tables for the fixture's bookkeeping; this app runs on its own SQLite file
    app = create_app(make_settings(None, REDIS_URL=own_redis_server.url, DATABASE_URL=f"sqlite:///{tmp_path}/d.db"))
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


def test_replay_after_redis_lost_everything_applies_each_key_once(redis_app, own_redis_server):
    app, redis = redis_app, own_redis_server.client()
    with app.app_context():
        _seed()
        _drain()
        _assert_exactly_once_and_cache_equals_ledger(app, redis)
    own_redis_server.restart_empty()  # no persistence: every key, queue and cache entry is gone
    assert redis.dbsize() == 0
    result = app.test_cli_runner().invoke(args=["outbox", "replay"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        total = db.session.scalar(select(func.count()).select_from(OutboxRecord))
        assert f"{total} outbox record(s) reset to pending" in result.output
        _drain()
        _assert_exactly_once_and_cache_equals_ledger(app, redis)  # the cache rebuilt from the ledger
        outbox.replay()  # and once more with Redis intact
        _drain()
        _assert_exactly_once_and_cache_equals_ledger(app, redis)


def test_a_stale_cache_delivery_never_overwrites_a_newer_one(app, redis_conn):
    """Two workers delivering for one user: the one that read the ledger first may write last.
    The cache keeps the newer view (more ledger rows), so it never goes back."""
    from core.delivery.sinks import CacheSink, Message

    sink = CacheSink(redis_conn)
    with app.app_context():
        catalogue.seed_catalogue()
        uid = create_user("stale@example.com", "uploader")[0].id
        ledger.record(uid, "EXPLORE", "submission", "submission:1:approved:v1", utcnow())
        db.session.commit()
        old_view = CacheSink.ledger_view({uid})
        ledger.record(uid, "PRESENT", "submission", "submission:2:approved:v1", utcnow())
        db.session.commit()
        sink.deliver([Message(2, "ledger.recorded", "k2", {"user_id": uid})])
        # The stale worker writes what it read before the second row.
        version, by_activity, badges = old_view[uid]
        sink._script(keys=sink.keys_for(uid), args=[version, uid, sum(by_activity.values()),
                                                   *[x for kv in by_activity.items() for x in kv], "|", *badges])
    assert int(redis_conn.hget(f"cache:user:{uid}:totals", "total")) == 70
    assert int(redis_conn.zscore("cache:leaderboard", uid)) == 70


def test_trim_drops_only_keys_past_the_replay_horizon_and_replay_stays_exactly_once(app, redis_conn):
    with app.app_context():
        _seed()
        _drain()
        keys = set(db.session.scalars(select(OutboxRecord.idempotency_key)))
        assert db.session.scalar(select(func.count()).select_from(SinkKey)) == len(keys)
        # Half the records (and their keys) are from long ago, past the replay horizon.
        old_ids = list(db.session.scalars(select(OutboxRecord.id).order_by(OutboxRecord.id)))[::2]
        old_keys = set(db.session.scalars(select(OutboxRecord.idempotency_key).where(OutboxRecord.id.in_(old_ids))))
        long_ago = utcnow() - timedelta(days=sink_keys.REPLAY_HORIZON_DAYS + sink_keys.TRIM_MARGIN_DAYS + 5)
        db.session.execute(update(OutboxRecord).where(OutboxRecord.id.in_(old_ids)).values(created_at=long_ago))
        db.session.execute(update(SinkKey).where(SinkKey.idempotency_key.in_(old_keys)).values(applied_at=long_ago))
        db.session.commit()
        assert sink_keys.trim() == len(old_keys)
        assert set(db.session.scalars(select(SinkKey.idempotency_key))) == keys - old_keys
        assert sink_keys.trim() == 0
        # A replay of everything resets only what is inside the horizon, whose keys are all kept.
        assert outbox.replay(since=long_ago - timedelta(days=1)) == len(keys - old_keys)
        assert outbox.replay() == len(keys - old_keys)
        _drain()
        _assert_exactly_once_and_cache_equals_ledger(app, redis_conn)
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) > 0
