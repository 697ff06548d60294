"""The outbox on PostgreSQL + Redis: kill -9 a delivering process inside the crash window
(sinks applied, batch not yet marked delivered), resume, replay everything, and check that each
sink applied each idempotency key exactly once. Dead records after the last attempt."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from core.delivery import outbox, sink_keys
from core.points import catalogue, ledger
from core.accounts.users import create_user
from core.platform.db import db, utcnow
from core.platform.models import OutboxRecord
from tests.conftest import base_env
from tests.services.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Delivers in small batches; the extra sink pauses after the real sinks have applied the batch
# and before the commit that marks it, which is where a kill -9 hurts most.
WORKER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from app import create_app
    from core.delivery import outbox, sink_keys
    from core.platform.services import services
    from core.delivery.sinks import build_sinks

    class PauseAfterApply:
        name = "pause"
        def deliver(self, messages):
            time.sleep(0.25)
            return {{m.id: None for m in messages}}

    app = create_app()
    with app.app_context():
        svc = services()
        sinks = build_sinks(svc.settings, svc.redis) + [PauseAfterApply()]
        print("ready", flush=True)
        while True:
            if outbox.deliver_batch(40, sinks=sinks).claimed == 0:
                time.sleep(0.05)
""")


def _seed_ledger(users: int = 6, per_user: int = 45) -> list[int]:
    catalogue.seed_catalogue()
    ids = [create_user(f"o{n}@example.com", "uploader")[0].id for n in range(users)]
    db.session.commit()
    now = datetime.now(timezone.utc)
    for uid in ids:
        for tag in ("elevate-ai-1-completed", "elevate-ai-2-completed"):
            ledger.record(uid, "LEARN", "kajabi", f"kajabi:tag:c{uid}:{tag}", now, tag=tag)
        for i in range(per_user):
            ledger.record(uid, "AMPLIFY", "submission", f"submission:{uid}-{i}:approved:v1", now,
                          counters={"peers": 3, "students": 7}, session_date=date(2024, 1, 1) + timedelta(days=i))
        db.session.commit()
    return ids


def _drain() -> None:
    while outbox.deliver_batch(500).claimed:
        pass


def _check_exactly_once(app, redis_conn, user_ids: list[int]) -> None:
    keys = set(db.session.scalars(select(OutboxRecord.idempotency_key)))
    assert db.session.scalar(select(func.count()).select_from(OutboxRecord).where(OutboxRecord.status != "delivered")) == 0
    with open(app.extensions["points"].settings.analytics_file) as fh:
        written = Counter(json.loads(line)["idempotency_key"] for line in fh)
    assert set(written) == keys and max(written.values()) == 1
    assert sink_keys.lookup("analytics", sorted(keys)) == (keys, {})  # all applied, none left "being written"
    assert not redis_conn.exists("cache:seen", "analytics:seen", "analytics:inflight")  # no growing sets
    for uid in user_ids:
        totals = ledger.user_totals(uid)
        cached = {k.decode(): int(v) for k, v in redis_conn.hgetall(f"cache:user:{uid}:totals").items()}
        assert cached["total"] == totals["total"] and cached["AMPLIFY"] == totals["by_activity"]["AMPLIFY"]
        assert int(redis_conn.zscore("cache:leaderboard", uid)) == totals["total"]
        assert {b.decode() for b in redis_conn.smembers(f"cache:user:{uid}:badges")} == {"STARTER"}


def test_kill_9_mid_batch_then_resume_and_replay_apply_each_key_once(app, redis_conn, tmp_path):
    settings = app.extensions["points"].settings
    with app.app_context():
        user_ids = _seed_ledger()
        total = db.session.scalar(select(func.count()).select_from(OutboxRecord))
    script = tmp_path / "deliver_loop.py"
    script.write_text(WORKER.format(root=ROOT))
    env = {**os.environ, **base_env(settings.local_storage_root), "ANALYTICS_FILE": settings.analytics_file,
           "FLASK_APP": "app:main_app"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    in_window = False
    try:
        deadline = time.monotonic() + 60
        with app.app_context():
            while time.monotonic() < deadline:
                delivered = db.session.scalar(select(func.count()).select_from(OutboxRecord)
                                              .where(OutboxRecord.status == "delivered"))
                db.session.commit()
                try:  # lines in the analytics file: what the sinks applied
                    with open(settings.analytics_file, "rb") as fh:
                        seen = fh.read().count(b"\n")
                except FileNotFoundError:
                    seen = 0
                # Sinks ahead of the database: a batch is applied but not yet marked.
                if delivered >= 80 and seen > delivered:
                    in_window = True
                    break
                time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert in_window, "never caught the worker between sink apply and commit"
    assert proc.returncode == -signal.SIGKILL

    with app.app_context():
        pending = db.session.scalar(select(func.count()).select_from(OutboxRecord).where(OutboxRecord.status == "pending"))
        assert 0 < pending < total
        _drain()  # the killed batch's row locks died with its connection; it is redelivered
        _check_exactly_once(app, redis_conn, user_ids)
        covered: list[int] = []  # small windows: many short UPDATEs, each committed
        assert outbox.replay(window=7, progress=covered.append) == total
        low, high = outbox.replay_range()
        assert sum(covered) == high - low + 1 and len(covered) > 1
        _drain()
        _check_exactly_once(app, redis_conn, user_ids)
        assert outbox.replay(since=utcnow() - timedelta(hours=1), topic="badge.awarded") == len(user_ids)
        _drain()
        _check_exactly_once(app, redis_conn, user_ids)


def test_failing_sink_backs_off_then_marks_dead(make_app):
    app = make_app(ANALYTICS_SINK_URL=f"http://127.0.0.1:{free_port()}/events", OUTBOX_MAX_ATTEMPTS=3)
    with app.app_context():
        catalogue.seed_catalogue()
        uid = create_user("dead@example.com", "uploader")[0].id
        ledger.record(uid, "EXPLORE", "submission", "submission:1:approved:v1", utcnow())
        db.session.commit()
        now = utcnow()
        first = outbox.deliver_batch(now=now)
        after = utcnow()  # the back-off counts from when the sinks gave up, however long that took
        assert (first.claimed, first.failed, first.dead) == (2, 2, 0)  # the ledger row and its badge
        record = db.session.scalars(select(OutboxRecord)).first()
        assert record.attempts == 1 and "ConnectionError" in record.last_error
        assert now + timedelta(seconds=2) <= record.next_attempt_at <= after + timedelta(seconds=2 * 1.25)
        assert outbox.deliver_batch(now=now).claimed == 0  # not due yet
        assert outbox.deliver_batch(now=now + timedelta(hours=2)).failed == 2
        last = outbox.deliver_batch(now=now + timedelta(hours=4))
        assert last.dead == 2
        assert set(db.session.scalars(select(OutboxRecord.status))) == {"dead"}
        assert outbox.deliver_batch(now=now + timedelta(days=1)).claimed == 0
        assert outbox.replay() == 2
        assert set(db.session.scalars(select(OutboxRecord.status))) == {"pending"}


def test_http_sink_sends_the_idempotency_key(make_app):
    received: list[tuple[str, dict]] = []

    @Request.application
    def receiver(request):
        received.append((request.headers.get("Idempotency-Key"), request.get_json()))
        return Response(status=202)

    server = make_server("127.0.0.1", 0, receiver, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        app = make_app(ANALYTICS_SINK_URL=f"http://127.0.0.1:{server.server_port}/events")
        with app.app_context():
            catalogue.seed_catalogue()
            uid = create_user("http@example.com", "uploader")[0].id
            ledger.record(uid, "PRESENT", "submission", "submission:9:approved:v1", utcnow())
            db.session.commit()
            assert outbox.deliver_batch().delivered == 2
    finally:
        server.shutdown()
        thread.join(5)
    keys = sorted(k for k, _ in received)
    assert keys == sorted([f"badge:{uid}:COMMUNITY_VOICE", "ledger:submission:submission:9:approved:v1"])
    assert all(body["idempotency_key"] == key for key, body in received)


def test_a_slow_http_sink_leaves_the_rest_of_the_batch_pending_not_failed(make_app):
    """A receiver that accepts everything, slowly: what the sink had no time for is not marked
    failed (which, repeated, would end as dead letters) but stays pending for the next run."""
    from core.delivery.sinks import AnalyticsHttpSink

    received: list[str] = []

    @Request.application
    def slow_receiver(request):
        time.sleep(0.3)
        received.append(request.headers.get("Idempotency-Key"))
        return Response(status=202)

    server = make_server("127.0.0.1", 0, slow_receiver, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        app = make_app()
        with app.app_context():
            catalogue.seed_catalogue()
            uid = create_user("slow@example.com", "uploader")[0].id
            for n in range(8):
                ledger.record(uid, "LEARN", "backfill", f"slow-{n}", utcnow())
            db.session.commit()
            sink = AnalyticsHttpSink(f"http://127.0.0.1:{server.server_port}/events", budget_s=1.0)
            first = outbox.deliver_batch(sinks=[sink])
            assert first.failed == first.dead == 0 and first.delivered + first.untried == first.claimed
            # It stopped at its budget: each POST takes at least 0.3 s, so within the 1 s budget
            # at least one and at most four can start, and the rest of the eight stay untried.
            assert first.claimed == 8 and 1 <= first.delivered <= 4 and first.untried >= 4
            untouched = db.session.scalars(select(OutboxRecord).where(OutboxRecord.status == "pending")).all()
            assert len(untouched) == first.untried
            assert all(r.attempts == 0 and r.last_error is None for r in untouched)
            for _ in range(10):  # later runs carry on until every record is delivered
                if outbox.deliver_batch(sinks=[sink]).claimed == 0:
                    break
            assert set(db.session.scalars(select(OutboxRecord.status))) == {"delivered"}
    finally:
        server.shutdown()
        thread.join(5)
    assert len(received) == len(set(received))  # each record posted once


@pytest.mark.parametrize("attempts", [1, 5, 11, 12, 30])
def test_backoff_is_exponential_capped_with_jitter(attempts):
    base = min(2 ** attempts, 3600)
    for _ in range(20):
        assert base <= outbox.backoff_seconds(attempts) <= base * 1.25


def test_file_sink_recovers_a_write_that_was_never_marked_seen(app, redis_conn, tmp_path):
    """The state a kill -9 leaves between the file append and the seen mark: in flight + written."""
    from core.delivery.sinks import AnalyticsFileSink, Message

    path = str(tmp_path / "a.jsonl")
    sink = AnalyticsFileSink(path)
    m1, m2 = Message(1, "ledger.recorded", "k1", {"user_id": 1}), Message(2, "ledger.recorded", "k2", {"user_id": 1})
    with open(path, "w") as fh:
        fh.write('{"idempotency_key": "k0"}\n')
    offset = os.path.getsize(path)
    with app.app_context():
        sink_keys.note_writing("analytics", ["k1", "k2"], offset)
        with open(path, "a") as fh:
            fh.write(json.dumps({"idempotency_key": "k1"}) + "\n" + '{"idempotency_key": "k2", "tor')  # k2 torn
        sink.deliver([m1, m2])
        sink.deliver([m1, m2])
        assert sink_keys.lookup("analytics", ["k1", "k2"]) == ({"k1", "k2"}, {})
    with open(path) as fh:
        lines = fh.read().splitlines()
    assert lines[2] == '{"idempotency_key": "k2", "tor'  # the torn fragment stays on its own line
    keys = [json.loads(line)["idempotency_key"] for line in lines if line != lines[2]]
    assert Counter(keys) == {"k0": 1, "k1": 1, "k2": 1}
