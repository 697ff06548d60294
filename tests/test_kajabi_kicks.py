"""No hook waits for another hook (SQLite and PostgreSQL): whenever a hook's event is committed,
a drain that will read after that commit is queued, by design. Before, a hook within 0.1 s of
its process's last kick skipped Redis, trusting a drain that (on SQLite always) might already
have read past it: the event stayed `received` until the next hook came."""
from __future__ import annotations

import pytest
from flask_migrate import upgrade
from sqlalchemy import select

from app import create_app
from core.accounts.users import create_user
from core.platform.db import db
from core.platform.models import KajabiEvent
from core.points import catalogue
from jobs import context
from jobs.kajabi import process_event
from tests.test_kajabi import SECRET, burst, documented, post


@pytest.fixture(params=["sqlite", "postgresql"])
def hook_app(request, make_app, make_settings, tmp_path):
    if request.param == "postgresql":
        app = make_app(KAJABI_WEBHOOK_SECRET=SECRET)
    else:
        make_app()  # a clean Redis db for the queue
        app = create_app(make_settings(None, DATABASE_URL=f"sqlite:///{tmp_path}/kicks.db", KAJABI_WEBHOOK_SECRET=SECRET))
        with app.app_context():
            upgrade()
    with app.app_context():
        catalogue.seed_catalogue()
        create_user("known@example.com", "uploader")
        db.session.commit()
    context.bind(app)
    burst(app)  # the reconcile that creating the user queued
    yield app
    with app.app_context():
        db.engine.dispose()


def _states(app) -> dict[str, str]:
    with app.app_context():
        return dict(db.session.execute(select(KajabiEvent.event_id, KajabiEvent.state)).all())


def test_a_hook_right_after_a_drain_read_is_still_drained_without_another_hook(hook_app):
    ledger_queue = hook_app.extensions["points"].queues["ledger"]
    client = hook_app.test_client()
    first = post(client, documented("evt-a", tag="elevate-ai-1-completed"))
    assert first.status_code == 202 and ledger_queue.count == 1
    # A worker takes that drain and runs it to the end at once (what a worker does milliseconds
    # after the kick); the next hook comes right after, well inside the old 0.1 s reuse window.
    [job] = ledger_queue.jobs
    ledger_queue.remove(job)
    with hook_app.app_context():
        row_id = db.session.scalar(select(KajabiEvent.id).where(KajabiEvent.event_id == "evt-a"))
    process_event(row_id)
    assert post(client, documented("evt-b", tag="elevate-ai-2-completed")).status_code == 202
    assert ledger_queue.count == 1, "the second hook queued no drain: it would wait for a third hook"
    burst(hook_app)
    assert _states(hook_app) == {"evt-a": "ledgered", "evt-b": "ledgered"}


def test_a_drain_out_of_time_queues_its_next_slice(hook_app):
    ledger_queue = hook_app.extensions["points"].queues["ledger"]
    client = hook_app.test_client()
    for n, tag in enumerate(["elevate-ai-1-completed", "elevate-ai-2-completed", "unknown-tag"]):
        assert post(client, documented(f"evt-{n}", tag=tag)).status_code == 202
    ledger_queue.empty()
    with hook_app.app_context():
        first = db.session.scalar(select(KajabiEvent.id).order_by(KajabiEvent.id))
    process_event(first, budget_s=0)  # stops at once, with events left
    assert ledger_queue.count == 1, "a drain that ran out of time left its events to the next hook"
    burst(hook_app)
    assert set(_states(hook_app).values()) <= {"ledgered", "ignored"}


def test_a_drain_lost_with_its_worker_is_replaced_by_the_sweep(hook_app):
    """The once-marker's job taken by a worker that was SIGKILLed before it cleared the marker:
    every hook then finds the marker set and queues nothing. The 15 s sweep queues a drain for
    an event left `received` past 10 s, marker or not."""
    from datetime import timedelta

    from sqlalchemy import update

    from core.platform.db import utcnow
    from jobs.kajabi import STALE_RECEIVED_S, sweep_received

    ledger_queue = hook_app.extensions["points"].queues["ledger"]
    client = hook_app.test_client()
    assert post(client, documented("evt-lost", tag="elevate-ai-1-completed")).status_code == 202
    ledger_queue.empty()  # its drain died with the worker; the marker stays set
    assert post(client, documented("evt-after", tag="elevate-ai-2-completed")).status_code == 202
    assert ledger_queue.count == 0  # the marker stops the kick
    assert sweep_received() == {"queued": 0}  # young events are a running drain's business
    with hook_app.app_context():
        db.session.execute(update(KajabiEvent).values(received_at=utcnow() - timedelta(seconds=STALE_RECEIVED_S + 1)))
        db.session.commit()
    assert sweep_received() == {"queued": 1} and ledger_queue.count == 1
    burst(hook_app)
    assert _states(hook_app) == {"evt-lost": "ledgered", "evt-after": "ledgered"}


def test_kick_reuse_stays_inside_the_drains_idle_grace():
    """The reuse is safe only while a started drain keeps reading for longer than it (kajabi.KICK_REUSE_S)."""
    from core.points.kajabi import KICK_REUSE_S
    from jobs.kajabi import IDLE_GRACE_S

    assert 0 < KICK_REUSE_S * 2 <= IDLE_GRACE_S


def test_hooks_right_after_a_kick_ask_redis_nothing_on_postgres_and_the_drain_takes_them(hook_app):
    """A hook within KICK_REUSE_S of its process's last kick, after the drain that kick queued has
    started (its marker cleared, so asking Redis would queue a second drain), queues nothing on
    PostgreSQL and is still ledgered by that drain. On SQLite (a drain reads once) it asks."""
    import threading
    import time

    from core.platform.queues import once_marker
    from core.points.kajabi import KICK_REUSE_S, PROCESS_KICK

    postgres = hook_app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
    svc = hook_app.extensions["points"]
    ledger_queue, marker = svc.queues["ledger"], once_marker(svc.queues.prefix, PROCESS_KICK)
    client = hook_app.test_client()
    tags = ["elevate-ai-1-completed", "elevate-ai-2-completed"]
    for attempt in range(5):  # a pair slower than KICK_REUSE_S (a busy machine) proves nothing: again
        first_at = time.monotonic()
        assert post(client, documented(f"evt-a{attempt}", tag=tags[0], contact=f"c-{attempt}")).status_code == 202
        [job] = ledger_queue.jobs
        ledger_queue.remove(job)
        with hook_app.app_context():
            row_id = db.session.scalar(select(KajabiEvent.id).where(KajabiEvent.event_id == f"evt-a{attempt}"))
        drain = threading.Thread(target=process_event, args=(row_id,))
        drain.start()  # the worker takes the kick's drain: it clears the marker, then reads
        while svc.redis.exists(marker):
            time.sleep(0.001)
        second = post(client, documented(f"evt-b{attempt}", tag=tags[1], contact=f"c-{attempt}"))
        within = time.monotonic() - first_at < KICK_REUSE_S
        queued = ledger_queue.count
        drain.join()
        assert second.status_code == 202
        if postgres and not within:
            burst(hook_app)
            continue
        if postgres:
            assert queued == 0, "the hook asked Redis and queued a second drain"
            states = _states(hook_app)  # the started drain took the second hook's event: nobody else ran
            assert states[f"evt-a{attempt}"] == states[f"evt-b{attempt}"] == "ledgered"
        else:
            assert queued == 1
            burst(hook_app)
            assert set(_states(hook_app).values()) == {"ledgered"}
        return
    pytest.fail("five pairs of hooks each took longer than KICK_REUSE_S; the machine is too busy to tell")
