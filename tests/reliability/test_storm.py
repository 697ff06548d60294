"""The storm (tests/reliability/storm.py): 2,000 hooks in `make test`, 20,000 in `make soak`
(STORM_HOOKS), with re-deliveries, late sign-ups, two SIGKILLs of a worker and a Redis restart.
Afterwards the ledger is exact, every outbox record is delivered and applied exactly once at
each sink, no job failed unexplained, and delivery kept flowing during the storm. Then Redis
loses everything, `flask outbox replay` runs, and it is all still exactly once, with the cache
rebuilt equal to the ledger. Figures go to tests/artifacts/storm-N.json (docs/reliability.md)."""
from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter

import psycopg
from rq import Queue, Worker
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy import func, insert, select

from core.accounts.users import create_user
from core.delivery import sink_keys
from core.platform.db import db, utcnow
from core.platform.models import ActivityTag, KajabiEvent, LedgerEntry, OutboxRecord, User, UserBadge
from core.platform.queues import QUEUE_NAMES
from core.points import catalogue
from tests.conftest import base_env
from tests.reliability import storm
from tests.services.ports import free_port
from tests.services.redis_server import own_redis_server  # noqa: F401 - a fixture

HOOKS = int(os.environ.get("STORM_HOOKS", "2000"))
LAG_BOUND_S = 5.0  # the oldest undelivered outbox record while hooks arrive (issue 14)
# After the Redis restart the workers reconnect with back-off; that outage is not counted in the
# lag bound (it is reported on its own).
OUTAGE_WINDOW_S = 10.0
ARTIFACTS = os.path.join(storm.ROOT, "tests", "artifacts")


def _counts(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        events = dict(conn.execute("SELECT state, count(*) FROM kajabi_events GROUP BY state").fetchall())
        outbox = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
    return {"received": events.get("received", 0), "unmatched": events.get("queued_unmatched", 0),
            "ledgered": events.get("ledgered", 0), "undelivered": sum(n for s, n in outbox.items() if s != "delivered"),
            "dead": outbox.get("dead", 0)}


def _settled(conninfo: str):
    counts = _counts(conninfo)
    return counts if counts["received"] == counts["unmatched"] == counts["undelivered"] == 0 else None


def _worker_names_by_pid(redis) -> dict[int, str]:
    return {w.pid: w.name for w in Worker.all(connection=redis)}


def _failed_jobs(redis) -> list[Job]:
    jobs = []
    for name in QUEUE_NAMES:
        registry = FailedJobRegistry(name, connection=redis)
        jobs += [job for job in Job.fetch_many(registry.get_job_ids(), connection=redis) if job is not None]
    return jobs


def _assert_each_key_once(settings) -> set[str]:
    keys = set(db.session.scalars(select(OutboxRecord.idempotency_key)))
    assert set(db.session.scalars(select(OutboxRecord.status))) == {"delivered"}
    with open(settings.analytics_file) as fh:
        written = Counter(json.loads(line)["idempotency_key"] for line in fh)
    assert set(written) == keys, f"missing {len(keys - set(written))}, extra {len(set(written) - keys)}"
    assert set(written.values()) == {1}, written.most_common(3)
    assert sink_keys.lookup("analytics", sorted(keys)) == (keys, {})
    return keys


def _assert_cache_equals_ledger(redis) -> None:
    sums = {}
    for uid, total in db.session.execute(select(LedgerEntry.user_id, func.sum(LedgerEntry.delta_points))
                                         .group_by(LedgerEntry.user_id)):
        sums[uid] = int(total)
    badges: dict[int, set[str]] = {}
    for uid, code in db.session.execute(select(UserBadge.user_id, UserBadge.badge_code)):
        badges.setdefault(uid, set()).add(code)
    for uid, total in sums.items():
        assert int(redis.hget(f"cache:user:{uid}:totals", "total") or -1) == total, uid
        assert int(redis.zscore("cache:leaderboard", uid) or -1) == total, uid
        assert {b.decode() for b in redis.smembers(f"cache:user:{uid}:badges")} == badges.get(uid, set()), uid
    assert redis.zcard("cache:leaderboard") == len(sums)


def test_kajabi_storm_with_worker_kills_and_a_redis_restart(make_app, own_redis_server, tmp_path):
    plan = storm.make_plan(HOOKS)
    app = make_app(REDIS_URL=own_redis_server.url, KAJABI_WEBHOOK_SECRET=storm.SECRET)
    settings = app.extensions["points"].settings
    redis = own_redis_server.client()
    conninfo = storm.dsn(settings.database_url)
    with app.app_context():
        catalogue.seed_catalogue()
        db.session.add(ActivityTag(tag="elevate-ai-3-completed", activity_code="LEARN"))
        now = utcnow()
        db.session.execute(insert(User), [{"email": storm.email(n), "name": f"Storm {n}", "role": "uploader",
                                           "password_hash": "", "active": True, "created_at": now, "updated_at": now}
                                          for n in range(plan.users) if n not in plan.late])
        db.session.commit()
    env = {**os.environ, **base_env(settings.local_storage_root), "REDIS_URL": own_redis_server.url,
           "KAJABI_WEBHOOK_SECRET": storm.SECRET, "FLASK_APP": "app:main_app", "WEB_CONCURRENCY": "2",
           "WEB_THREADS": "4", "LOG_LEVEL": "WARNING"}
    logdir = tmp_path / "logs"
    logdir.mkdir()
    system = storm.System(env, str(logdir), free_port())
    sampler = storm.LagSampler(conninfo)
    killed_names: set[str] = set()
    outages: list[tuple[float, float]] = []
    statuses: list[int] = []
    try:
        system.start_all()
        storm.wait_until(lambda: Worker.count(connection=redis) >= 2, 60, "two workers registered")
        sampler.start()
        size = -(-len(plan.hooks) // storm.CHUNKS)
        started = time.monotonic()
        for n in range(storm.CHUNKS):
            if n in storm.KILL_AT:
                pid = system.procs["ledger-worker"].pid
                killed_names.add(_worker_names_by_pid(redis).get(pid, f"pid-{pid}"))
                system.sigkill("ledger-worker")
                system.start_worker("ledger-worker")  # as a supervisor (compose, systemd) would
            if n == storm.SIGN_UP_AT:
                with app.app_context():
                    for user in sorted(plan.late):
                        create_user(storm.email(user), "uploader", password="storm-password-14")
                    db.session.commit()  # one commit: one reconcile for the lot (user_created signal)
            if n == storm.REDIS_RESTART_AT:
                # The sign-ups' reconcile has run (it must not be lost with Redis: the scheduler
                # would only retry it within 5 minutes).
                storm.wait_until(lambda: _counts(conninfo)["unmatched"] == 0, 120, "the late sign-ups reconciled")
                at = time.monotonic()
                own_redis_server.restart_empty()
                outages.append((at, at + OUTAGE_WINDOW_S))
            statuses += storm.post_chunk(system.port, plan.hooks[n * size:(n + 1) * size])
        posted = time.monotonic() - started
        final = storm.wait_until(lambda: _settled(conninfo), 300, f"the storm to settle: {_counts(conninfo)}")
        drained = time.monotonic() - started
        sampler.stop()
        for name in ("web", "ledger-worker", "delivery-worker", "scheduler"):
            assert system.alive(name), f"{name} died:\n{system.log_tail(name)}"

        # Every hook answered: each unique event once (202), each re-delivery as a duplicate (200).
        assert Counter(statuses) == {202: len(plan.unique), 200: len(plan.hooks) - len(plan.unique)}
        with app.app_context():
            assert final["ledgered"] == len(plan.unique) and final["dead"] == 0
            grants = set(db.session.execute(select(User.email, LedgerEntry.meta["tag"].as_string())
                                            .join(User, User.id == LedgerEntry.user_id)).all())
            assert grants == plan.expected_grants()
            assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == len(grants)
            held = Counter(email for email, _ in grants)
            learn = dict(db.session.execute(select(User.email, func.sum(LedgerEntry.delta_points))
                                            .join(User, User.id == LedgerEntry.user_id)
                                            .where(LedgerEntry.activity_code == "LEARN").group_by(User.email)).all())
            assert learn == {email: min(20, 10 * k) for email, k in held.items()}  # the cap held
            _assert_each_key_once(settings)
            figures = db.session.execute(select(func.min(KajabiEvent.received_at), func.max(KajabiEvent.ledgered_at))).one()
        unexplained = [(j.id, j.func_name, j.worker_name) for j in _failed_jobs(redis) if j.worker_name not in killed_names]
        assert unexplained == [], unexplained
        lag = sampler.max_lag(excluding=outages)
        lag_with_outage = sampler.max_lag()
        assert lag < LAG_BOUND_S, f"the oldest undelivered outbox record waited {lag:.1f} s during the storm"

        # Redis loses everything; replay; still exactly once, and the cache is the ledger again.
        own_redis_server.restart_empty()
        replay = subprocess.run([os.path.join(storm.VENV_BIN, "flask"), "outbox", "replay"], cwd=storm.ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert replay.returncode == 0, replay.stderr
        storm.wait_until(lambda: _settled(conninfo), 300, f"the replay to be delivered: {_counts(conninfo)}")
        with app.app_context():
            keys = _assert_each_key_once(settings)
            _assert_cache_equals_ledger(redis)
    finally:
        sampler.stop() if sampler.is_alive() else None
        system.stop_all()
    span = (figures[1] - figures[0]).total_seconds()
    result = {"hooks": len(plan.hooks), "unique_events": len(plan.unique), "users": plan.users,
              "late_sign_ups": len(plan.late), "ledger_rows": len(grants), "outbox_records": len(keys),
              "post_seconds": round(posted, 1), "drain_seconds": round(drained, 1),
              "events_per_s": round(len(plan.unique) / span, 1) if span else None,
              "max_outbox_lag_s": round(lag, 2), "max_outbox_lag_with_redis_restart_s": round(lag_with_outage, 2),
              "worker_sigkills": len(storm.KILL_AT)}
    os.makedirs(ARTIFACTS, exist_ok=True)
    with open(os.path.join(ARTIFACTS, f"storm-{HOOKS}.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    print("storm figures:", json.dumps(result))
