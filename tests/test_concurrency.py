"""Two processes writing for the same user at the same moment never exceed a cap (PostgreSQL's
per-user advisory lock in ledger.record). Each process builds its own app from the same settings."""
from __future__ import annotations

import multiprocessing
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select

from core.points import catalogue, ledger
from core.accounts.users import create_user
from core.platform.db import db
from core.platform.models import LedgerEntry, Submission

ROUNDS = 12


def _worker(env: dict, user_id: int, submission_ids: list[int], reviewer_id: int, name: str, barrier, results) -> None:
    from app import create_app
    from core.points import ledger as led
    from core.review import approvals
    from core.platform.db import db as database
    from core.platform.errors import Conflict

    app = create_app(env)
    with app.app_context():
        database.session.execute(select(1))  # connect before the race starts
        barrier.wait(timeout=60)
        points = 0
        for i in range(ROUNDS):
            try:
                points += led.record(user_id, "LEARN", "backfill", f"{name}-{i}", datetime.now(timezone.utc)).delta_points
                database.session.commit()
            except Conflict:
                database.session.rollback()
        for sid in submission_ids:
            points += approvals.approve_submission(sid, reviewer_id).delta_points
            database.session.commit()
        database.session.remove()
        database.engine.dispose()
    results.put((name, points))


def test_two_processes_never_exceed_the_caps(app, make_settings):
    env = {k: v for k, v in _env_of(make_settings).items()}
    with app.app_context():
        catalogue.seed_catalogue()
        uid = create_user("race@example.com", "uploader")[0].id
        rid = create_user("reviewer@example.com", "reviewer")[0].id
        day = date(2024, 6, 10)
        subs = []
        for i in range(8):  # 8 x 20 peers on days within one week: only 50 peers may count
            sub = Submission(user_id=uid, activity_code="AMPLIFY", status="in_review",
                             session_date=day + timedelta(days=i % 3), counters={"peers": 20, "students": 60})
            db.session.add(sub)
            subs.append(sub)
        db.session.commit()
        ids = [s.id for s in subs]

    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(2), spawn.Queue()
    procs = [spawn.Process(target=_worker, args=(env, uid, ids[n::2], rid, f"p{n}", barrier, results)) for n in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    earned = dict(results.get(timeout=5) for _ in procs)

    with app.app_context():
        totals = ledger.user_totals(uid)["by_activity"]
        assert totals["LEARN"] == 20
        rows = db.session.scalars(select(LedgerEntry).where(LedgerEntry.activity_code == "AMPLIFY")).all()
        assert sum(r.counters["peers"] for r in rows) == 50
        assert sum(r.counters["students"] for r in rows) == 200
        assert totals["AMPLIFY"] == 2 * 50 + 200
        assert sum(earned.values()) == totals["LEARN"] + totals["AMPLIFY"]
        assert len(rows) == 8


def _env_of(make_settings) -> dict:
    """The environment the fixtures' settings were built from, for create_app in a child process."""
    from tests.conftest import base_env

    settings = make_settings()
    return {**base_env(settings.local_storage_root), "ANALYTICS_FILE": settings.analytics_file}
