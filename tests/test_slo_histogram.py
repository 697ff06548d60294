"""/api/slo and /metrics read pre-aggregated tables (core.points.latency_hist) and give the same
answers as the scan over every event they replaced (slo.kajabi_to_ledger_reference): counts and
ratio exactly, percentiles at most 1% above, exactly when latencies sit on bucket edges. Every
path that ledgers an event counts it, and `flask slo backfill` recounts events written behind
the application's back."""
import random
from datetime import timedelta, timezone

import pytest
from flask_migrate import upgrade
from sqlalchemy import func, insert, select, text

from app import create_app
from core.accounts.users import create_user
from core.admin import actions
from core.monitoring import slo
from core.platform.db import db, utcnow
from core.platform.models import ActivityTag, KajabiEvent, KajabiLatency5m, KajabiLatencyDay, KajabiLatencyHour
from core.points import kajabi, latency_hist
from jobs import context
from jobs.kajabi import process_event, reconcile, trim_latency_hist
from tests.test_kajabi import documented, kapp, post  # noqa: F401 - kapp is a fixture

WINDOWS = [timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=1), timedelta(hours=6), timedelta(hours=24),
           timedelta(days=7), timedelta(days=28)]
US = timedelta(microseconds=1)


@pytest.fixture(params=["postgresql", "sqlite"])
def any_app(request, make_app, make_settings, tmp_path):
    app = make_app()  # clean PostgreSQL tables and Redis db
    if request.param == "sqlite":
        app = create_app(make_settings(None, DATABASE_URL=f"sqlite:///{tmp_path}/slo.db"))
        with app.app_context():
            upgrade()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _seed(app, latencies_us, seed=18, days=30):
    """Ledgered events (through the ORM, as core.points.kajabi.process writes them) received at
    random moments over `days` days, a third matchable only later; plus some still waiting."""
    rng = random.Random(seed)
    now = utcnow()
    with app.app_context():
        for i, latency in enumerate(latencies_us):
            received = now - timedelta(seconds=rng.uniform(0, days * 86400))
            start = received + timedelta(seconds=rng.uniform(1, 600)) if i % 3 == 0 else None
            db.session.add(KajabiEvent(event_id=f"e{i}", event_type="tag_added", payload={}, state="ledgered",
                                       received_at=received, matchable_at=start,
                                       ledgered_at=(start or received) + latency * US))
        for i in range(5):  # waiting past the target: a miss already
            db.session.add(KajabiEvent(event_id=f"w{i}", event_type="tag_added", payload={}, state="received",
                                       received_at=now - timedelta(seconds=rng.uniform(61, 3 * 86400))))
        db.session.add(KajabiEvent(event_id="u0", event_type="tag_added", payload={}, state="queued_unmatched",
                                   received_at=now - timedelta(hours=2)))
        db.session.commit()
    return now


def _compare(app, now, exactly=False):
    with app.app_context():
        for window in WINDOWS:
            fast, exact, problems = slo.differences(now, window)
            assert problems == [], (window, fast, exact)
            assert fast["events"] > 0 or window < timedelta(hours=24)
            if exactly:
                assert fast == exact, window


def test_the_same_answers_as_the_scan_within_one_percent(any_app):
    rng = random.Random(4)
    # Around the target on both sides, to the microsecond, and a long tail.
    latencies = [59_999_999, 60_000_000, 60_000_001, 0, 1, 99, 100, 101] + [
        int(rng.lognormvariate(13.5, 1.6)) for _ in range(600)]
    now = _seed(any_app, latencies)
    _compare(any_app, now)
    with any_app.app_context():
        figure = slo.kajabi_to_ledger(now, timedelta(days=31))  # every event seeded
        assert slo.differences(now, timedelta(days=31))[2] == []
        assert figure["events"] == len(latencies) + 5 and figure["within_60s"] == sum(1 for x in latencies if x <= 60_000_000)
        assert 0 < figure["ratio"] < 1


def test_exactly_the_same_when_latencies_sit_on_bucket_edges(any_app):
    rng = random.Random(7)
    low, high = latency_hist.bucket_of(10_000), latency_hist.bucket_of(900_000_000)
    now = _seed(any_app, [latency_hist.EDGES[rng.randint(low, high)] for _ in range(500)])
    _compare(any_app, now, exactly=True)


def test_every_window_read_together_gives_each_windows_own_answer(any_app):
    """A scrape reads its five windows in one statement (kajabi_to_ledger_windows); each must be
    what the scan over that window alone says, waiting events included."""
    rng = random.Random(11)
    now = _seed(any_app, [int(rng.lognormvariate(14, 1.8)) for _ in range(400)], days=2)
    with any_app.app_context():
        together = slo.kajabi_to_ledger_windows({str(w): w for w in WINDOWS}, now)
        for window in WINDOWS:
            exact = slo.kajabi_to_ledger_reference(now, window)
            assert {k: together[str(window)][k] for k in ("events", "within_60s", "ratio", "window_seconds")} == {
                k: exact[k] for k in ("events", "within_60s", "ratio", "window_seconds")}, window
        assert len({together[str(w)]["events"] for w in WINDOWS}) > 3  # the windows differ
        if db.engine.dialect.name == "postgresql":  # read without parallel workers, and only that read
            assert db.session.scalar(text("SHOW max_parallel_workers_per_gather")) != "0"


def test_buckets_are_one_percent_wide_with_60_s_an_edge():
    edges = latency_hist.EDGES
    assert edges == sorted(set(edges)) and edges[latency_hist.TARGET_BUCKET] == 60_000_000
    assert all(b <= a * 1.01 for a, b in zip(edges[1:], edges[2:]) if b - a > 1)
    assert latency_hist.bucket_of(60_000_000) == latency_hist.TARGET_BUCKET == latency_hist.bucket_of(59_999_999 + 1)
    assert latency_hist.bucket_of(60_000_001) == latency_hist.TARGET_BUCKET + 1
    assert len(edges) < 32767  # a smallint


def _state_counts_match():
    assert latency_hist.state_counts() == dict(db.session.execute(
        select(KajabiEvent.state, func.count()).group_by(KajabiEvent.state)).all())


def test_every_path_that_ledgers_counts(kapp):
    client = kapp.test_client()
    hooks = {"batch": documented("evt-batch", tag="elevate-ai-3-completed"),
             "single": documented("evt-single", tag="elevate-ai-3-completed", contact="c-101"),
             "reconcile-user": documented("evt-sign-up", email="later@example.com", contact="c-later"),
             "reconcile-tag": documented("evt-tag", tag="elevate-ai-9-completed", contact="c-102"),
             "admin": documented("evt-admin", email="admin-attached@example.com", contact="c-admin")}
    for body in hooks.values():
        assert post(client, body).status_code == 202
    context.bind(kapp)
    with kapp.app_context():
        kapp.extensions["points"].queues["ledger"].empty()
        ids = dict(db.session.execute(select(KajabiEvent.event_id, KajabiEvent.id)).all())
        counts: dict = {}
        # The per-event path (the drain's fallback, and SQLite's drain).
        assert kajabi.process_and_commit(ids["evt-single"], counts) and counts == {"ledgered": 1}
        assert slo.kajabi_to_ledger()["events"] == 1
    process_event(ids["evt-batch"])  # the batch drain (PostgreSQL): the rest in one transaction
    with kapp.app_context():
        states = dict(db.session.execute(select(KajabiEvent.event_id, KajabiEvent.state)).all())
        assert states["evt-batch"] == "ledgered" and states["evt-sign-up"] == "queued_unmatched"
        assert slo.kajabi_to_ledger()["events"] == 2
        _state_counts_match()
        create_user("later@example.com", "uploader")
        db.session.add(ActivityTag(tag="elevate-ai-9-completed", activity_code="LEARN"))
        db.session.commit()
    reconcile()  # the unmatched contact and the newly mapped tag
    with kapp.app_context():
        assert slo.kajabi_to_ledger()["events"] == 4
        admin, _ = create_user("ops@example.com", "admin")
        create_user("admin-attached@example.com", "uploader")
        db.session.commit()
        # An admin attaches the last waiting event to a user by hand.
        actions.attach_event(admin.id, ids["evt-admin"], "admin-attached@example.com")
        db.session.commit()
        assert set(db.session.scalars(select(KajabiEvent.state))) == {"ledgered"}
        assert slo.kajabi_to_ledger()["events"] == 5
        assert slo.differences()[2] == []
        _state_counts_match()


def test_backfill_counts_events_written_behind_the_application(make_app, redis_conn):
    app = make_app()
    now = utcnow()
    with app.app_context():  # as bench.slo or an import would: straight into the table
        db.session.execute(insert(KajabiEvent), [
            {"event_id": f"b{i}", "event_type": "tag_added", "payload": {}, "state": "ledgered",
             "received_at": now - timedelta(hours=i * 7), "ledgered_at": now - timedelta(hours=i * 7) + timedelta(seconds=i)}
            for i in range(1, 80)])
        db.session.commit()
        assert slo.kajabi_to_ledger(now)["events"] == 0 and latency_hist.state_counts() == {}
    runner = app.test_cli_runner()
    failed = runner.invoke(args=["slo", "verify"])
    assert failed.exit_code == 1 and "run `flask slo backfill`" in failed.output
    assert len(failed.output.strip().splitlines()[-1]) < 300  # the reason on one line
    done = runner.invoke(args=["slo", "backfill"])
    assert done.exit_code == 0, done.output
    assert "79 ledgered event(s) counted over" in done.output and "ledgered=79" in done.output
    again = runner.invoke(args=["slo", "backfill", "--days", "2"])  # hours are replaced, not added to
    assert again.exit_code == 0, again.output
    ok = runner.invoke(args=["slo", "verify"])
    assert ok.exit_code == 0 and "the same" in ok.output, ok.output
    with app.app_context():
        assert slo.kajabi_to_ledger()["events"] == sum(1 for i in range(1, 80) if i * 7 < 28 * 24)
        assert db.session.scalar(select(func.sum(KajabiLatencyHour.n))) == 79
        assert db.session.scalar(select(func.sum(KajabiLatencyDay.n))) == 79
        assert db.session.scalar(select(func.sum(KajabiLatency5m.n))) == 79
        _state_counts_match()
    refused = runner.invoke(args=["slo", "verify", "--window", "29d"])  # out of range: a usage error, as --days
    assert refused.exit_code == 2 and "between 5m and 28d" in refused.output


def test_the_hourly_trim_drops_only_rows_no_window_reads(make_app):
    app = make_app()
    now = _seed(app, [1_500_000] * 40, days=60)  # half of them older than any window
    with app.app_context():
        before = slo.kajabi_to_ledger(now)
        old = db.session.scalar(select(func.count()).select_from(KajabiLatencyHour)
                                .where(KajabiLatencyHour.hour < now - latency_hist.KEEP_FINE - timedelta(days=1)))
        assert old > 0
    context.bind(app)
    assert trim_latency_hist()["dropped"] >= 2 * old
    with app.app_context():
        assert slo.kajabi_to_ledger(now) == before and slo.differences(now)[2] == []
        assert db.session.scalar(select(func.sum(KajabiLatencyDay.n))) == 40  # day rows are kept
        assert db.session.scalar(select(func.min(KajabiLatency5m.start))) >= now - latency_hist.KEEP_FINE - timedelta(days=1)


def test_a_database_session_outside_utc_keys_the_histogram_on_utc_hours(make_app, redis_conn):
    """PostgreSQL returns timestamptz in the session's TimeZone (initdb takes the machine's). The
    histogram floors moments to 5 minutes, hours and days: read in Asia/Kolkata (+05:30) they were
    cut off the UTC grid, windows missed them and a backfill counted them twice (found by the
    outside test). Moments read from the database are UTC whatever the session's zone."""
    from tests.conftest import DATABASE_URL

    app = make_app(DATABASE_URL=DATABASE_URL + "?options=-c%20TimeZone%3DAsia/Kolkata")
    now = utcnow()
    with app.app_context():
        assert db.session.execute(text("SHOW TimeZone")).scalar() == "Asia/Kolkata"
        db.session.execute(insert(KajabiEvent), [
            {"event_id": f"k{i}", "event_type": "tag_added", "payload": {}, "state": "ledgered",
             "received_at": now - timedelta(hours=i * 5), "ledgered_at": now - timedelta(hours=i * 5) + timedelta(seconds=i)}
            for i in range(1, 30)])
        db.session.commit()
        assert db.session.scalar(select(KajabiEvent.received_at).limit(1)).utcoffset() == timedelta(0)
    runner = app.test_cli_runner()
    for _ in range(2):  # a second backfill replaces, never adds
        assert runner.invoke(args=["slo", "backfill", "--days", "7"]).exit_code == 0
    ok = runner.invoke(args=["slo", "verify", "--window", "7d"])
    assert ok.exit_code == 0 and "the same" in ok.output, ok.output
    with app.app_context():
        hours = db.session.scalars(select(KajabiLatencyHour.hour)).all()
        assert hours and all(h.astimezone(timezone.utc).minute == 0 for h in hours)
        assert db.session.scalar(select(func.sum(KajabiLatencyHour.n))) == sum(1 for i in range(1, 30) if i * 5 < 7 * 24)
