"""The batched Kajabi drain (core.points.kajabi_batch, ledger_batch.record_many) on real PostgreSQL + Redis:
the same outcomes as the per-event path, and two workers draining one backlog at once take
every event exactly once without exceeding a cap."""
from __future__ import annotations

import json
import multiprocessing

from sqlalchemy import func, select

from core.points import kajabi_batch, ledger
from core.accounts.users import create_user
from core.platform.db import db
from core.platform.models import ActivityTag, KajabiEvent, LedgerEntry, OutboxRecord, User, UserBadge
from tests.test_concurrency import _env_of
from tests.test_kajabi import documented, events, kapp, post  # noqa: F401 (kapp is a fixture)

TAGS = ("elevate-ai-1-completed", "elevate-ai-2-completed", "elevate-ai-3-completed")


def _drain_all(app) -> dict[str, int]:
    counts: dict[str, int] = {}
    with app.app_context():
        while claimed := kajabi_batch.claim(7):
            for state, n in kajabi_batch.process_batch(claimed).items():
                counts[state] = counts.get(state, 0) + n
            db.session.commit()
    return counts


def test_batch_matches_the_per_event_outcomes(kapp):
    client = kapp.test_client()
    bodies = [documented("e1", tag="elevate-ai-1-completed"), documented("e2", tag="Elevate-AI-1-Completed"),
              documented("e3", tag="elevate-ai-2-completed"), documented("e4", tag="elevate-ai-3-completed"),
              documented("e5", tag="unknown-course"), documented("e6", email="nobody@example.com", contact="c-999"),
              documented("e7", event="tag_removed"), documented("e8", event="contact_created"),
              documented("e9", email="KNOWN@example.com", contact="c-100", tag="elevate-ai-2-completed")]
    for body in bodies:
        assert post(client, body).status_code == 202
    assert _drain_all(kapp) == {"ledgered": 5, "ignored": 2, "queued_unmatched": 1, "recorded": 1}
    rows = events(kapp)
    assert [(e.state, e.result_code) for e in rows] == [
        ("ledgered", "awarded"), ("ledgered", "duplicate_event"), ("ledgered", "awarded"), ("ledgered", "cap_reached"),
        ("ignored", "unknown_tag"), ("queued_unmatched", "unmatched_contact"), ("recorded", "tag_removed"),
        ("ignored", "unsupported_event"), ("ledgered", "duplicate_event")]
    assert all(e.ledgered_at is not None for e in rows if e.state == "ledgered")
    assert rows[1].ledger_id == rows[0].ledger_id and rows[8].ledger_id == rows[2].ledger_id
    with kapp.app_context():
        user = db.session.scalar(select(User).where(User.email == "known@example.com"))
        assert user.kajabi_contact_id == "c-100"  # bound on the first e-mail match
        assert ledger.user_totals(user.id)["total"] == 20
        [badge] = db.session.scalars(select(UserBadge)).all()
        assert badge.badge_code == "STARTER" and badge.ledger_id == rows[2].ledger_id  # the row that earned it
        entries = db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.id)).all()
        assert [e.meta.get("tag") for e in entries] == list(TAGS)
        assert entries[2].meta["capped"] is True and entries[2].delta_points == 0
        outbox = db.session.scalars(select(OutboxRecord).order_by(OutboxRecord.id)).all()
        assert [(o.topic, o.ledger_id) for o in outbox] == [
            ("ledger.recorded", entries[0].id), ("badge.awarded", entries[1].id), ("ledger.recorded", entries[1].id),
            ("ledger.recorded", entries[2].id)]
        assert outbox[2].payload["badge_codes"] == ["STARTER"] and outbox[2].payload["delta_points"] == 10


def test_a_batch_that_fails_is_retried_event_by_event_by_the_job(kapp):
    """An activity whose cap period was set in SQL to one the rules do not know fails in record();
    the job rolls the batch back and the other events of that batch still go through. (A tag
    mapped to a rolling_7d activity used to be the way in; such events are now `ignored`,
    tests/test_kajabi_session_date_activities.py.)"""
    from sqlalchemy import text

    from tests.test_kajabi import burst

    with kapp.app_context():
        db.session.add(ActivityTag(tag="bad-tag", activity_code="AMPLIFY"))
        db.session.execute(text("UPDATE activities SET cap_period = 'fortnightly' WHERE code = 'AMPLIFY'"))
        db.session.commit()
    client = kapp.test_client()
    for body in (documented("a1"), documented("a2", tag="bad-tag"), documented("a3", tag="elevate-ai-2-completed")):
        assert post(client, body).status_code == 202
    burst(kapp)
    assert [(e.state, e.result_code) for e in events(kapp)] == [
        ("ledgered", "awarded"), ("received", None), ("ledgered", "awarded")]


def _drainer(env: dict, barrier, results) -> None:
    from app import create_app
    from core.platform.db import db as database

    app = create_app(env)
    with app.app_context():
        database.session.execute(select(1))
        database.session.commit()
        barrier.wait(timeout=60)
        done = 0
        while claimed := kajabi_batch.claim(25):
            done += len(claimed)
            kajabi_batch.process_batch(claimed)
            database.session.commit()
        database.session.remove()
        database.engine.dispose()
    results.put(done)


def test_two_workers_drain_one_backlog_exactly_once_within_the_caps(kapp, make_settings):
    users = 40
    with kapp.app_context():
        for n in range(users):
            create_user(f"u{n}@example.com", "uploader")
        # Each user gets each of the three LEARN tags twice (a resend under a new event id):
        # 20 points per user at most, and exactly one ledger row per (contact, tag).
        rows = []
        for n in range(users):
            for t, tag in enumerate(TAGS * 2):
                body = documented(f"r{n}-{t}", email=f"u{n}@example.com", contact=f"c{n}", tag=tag)
                rows.append(KajabiEvent(event_id=body["id"], event_type="tag_added", payload=json.loads(json.dumps(body)),
                                        contact_id=f"c{n}", email=f"u{n}@example.com", tag=tag, state="received"))
        db.session.add_all(rows)
        db.session.commit()
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(2), spawn.Queue()
    env = _env_of(make_settings)
    procs = [spawn.Process(target=_drainer, args=(env, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    done = [results.get(timeout=5) for _ in procs]
    assert sum(done) == users * 6 and all(done), done  # both took part; nothing taken twice
    with kapp.app_context():
        states = dict(db.session.execute(select(KajabiEvent.result_code, func.count()).group_by(KajabiEvent.result_code)).all())
        assert states == {"awarded": users * 2, "cap_reached": users, "duplicate_event": users * 3}
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == users * 3
        per_user = db.session.execute(select(LedgerEntry.user_id, func.sum(LedgerEntry.delta_points))
                                      .group_by(LedgerEntry.user_id)).all()
        assert len(per_user) == users and all(total == 20 for _, total in per_user)
        assert db.session.scalar(select(func.count()).select_from(UserBadge)) == users
        assert db.session.scalar(select(func.count()).select_from(OutboxRecord)) == users * 3 + users
        orphans = db.session.scalar(select(func.count()).select_from(LedgerEntry).where(
            ~LedgerEntry.id.in_(select(OutboxRecord.ledger_id).where(OutboxRecord.topic == "ledger.recorded"))))
        assert orphans == 0


def test_a_drain_that_rq_times_out_stops_there_and_leaves_its_events_received(kapp):
    """RQ's timeout lands while the batch waits for a user's ledger lock. The drain must stop (a
    failed job; the events stay received for the next drain), not swallow the timeout and carry on
    past it event by event."""
    import threading

    import psycopg
    from rq.job import JobStatus
    from sqlalchemy.engine import make_url

    from jobs import context
    from jobs.worker import build_worker
    from tests.conftest import DATABASE_URL

    client = kapp.test_client()
    for n in (1, 2):
        assert post(client, documented(f"evt-{n}", tag=f"elevate-ai-{n}-completed")).status_code == 202
    with kapp.app_context():
        uid = db.session.scalar(select(User.id).where(User.email == "known@example.com"))
    dsn = make_url(DATABASE_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    holder = psycopg.connect(dsn)  # another writer holds the user's ledger lock for 6 s
    holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", (ledger.LOCK_NAMESPACE, uid))
    release = threading.Timer(6.0, holder.rollback)
    release.start()
    try:
        svc = kapp.extensions["points"]
        svc.queues["ledger"].empty()  # the hooks' own kicks: this test runs one drain, with a short timeout
        job = svc.queues.enqueue("ledger", "jobs.kajabi.process_event", events(kapp)[0].id, timeout=2)
        context.bind(kapp)
        build_worker(svc, ["ledger"]).work(burst=True)
    finally:
        release.join()
        holder.close()
    job.refresh()
    # The job ends with the timeout itself, not with a rollback tried on the interrupted connection.
    last_line = job.latest_result().exc_string.strip().splitlines()[-1]
    assert job.get_status() == JobStatus.FAILED and last_line.startswith("rq.timeouts.JobTimeoutException"), last_line
    assert {e.state for e in events(kapp)} == {"received"}  # nothing half-done; the next drain takes them


def test_a_drain_that_is_behind_takes_bigger_batches_and_a_short_one_brings_it_back(kapp):
    """jobs.kajabi: each full batch doubles the next claim (100, 200, 400: BATCH_MAX), and a short
    one, the drain having caught up, goes back to BATCH_SIZE. Events of one batch share their
    `ledgered_at` (one stamp per transaction), so the stamps show the batches."""
    from sqlalchemy import insert

    from jobs import context
    from jobs.kajabi import BATCH_MAX, process_event

    assert (kajabi_batch.BATCH_SIZE, BATCH_MAX) == (100, 400)
    users = 125  # six hooks each (three tags, each sent twice): 750 events = 100 + 200 + 400 + 50
    with kapp.app_context():
        db.session.execute(insert(User), [{"email": f"w{n}@example.com", "name": f"w{n}", "role": "uploader",
                                           "password_hash": "", "kajabi_contact_id": f"cw{n}"} for n in range(users)])
        db.session.add_all([KajabiEvent(event_id=f"w{n}-{t}", event_type="tag_added", payload={}, contact_id=f"cw{n}",
                                        email=f"w{n}@example.com", tag=tag, state="received")
                            for n in range(users) for t, tag in enumerate(TAGS * 2)])
        db.session.commit()
        first = db.session.scalar(select(func.min(KajabiEvent.id)))
    context.bind(kapp)
    counts = process_event(first, budget_s=600)  # one slice, whatever the machine's speed
    assert counts == {"ledgered": users * 6}
    with kapp.app_context():
        sizes = db.session.execute(select(func.count()).select_from(KajabiEvent).group_by(KajabiEvent.ledgered_at)
                                   .order_by(KajabiEvent.ledgered_at)).scalars().all()
        assert sizes == [100, 200, 400, 50]
        codes = dict(db.session.execute(select(KajabiEvent.result_code, func.count()).group_by(KajabiEvent.result_code)).all())
        assert codes == {"awarded": users * 2, "cap_reached": users, "duplicate_event": users * 3}
