"""The production worker (jobs.worker) on the machine's Redis: service-only jobs run in the
worker's own process and are still stopped by their timeout; media jobs (Pillow) run in a forked
work horse, so a crash there cannot take the worker down."""
import os

from rq.job import JobStatus

from core.platform.queues import IN_PROCESS
from core.platform.services import services
from jobs import context
from jobs.worker import build_worker


def test_service_jobs_run_in_process_and_image_jobs_in_a_work_horse(app):
    with app.app_context():
        svc = services()
        in_process = {name: svc.queues.enqueue(name, "os.getpid") for name in ("scans", "ledger", "outbox", "maintenance")}
        forked = svc.queues.enqueue("media", "os.getpid")
        csv_like = svc.queues.enqueue("media", "os.getpid", meta={IN_PROCESS: True})
        context.bind(app)
        build_worker(svc).work(burst=True)
    for name, job in in_process.items():
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED, name
        assert job.return_value() == os.getpid(), f"{name} job was forked"
    forked.refresh()
    assert forked.get_status() == JobStatus.FINISHED
    assert forked.return_value() != os.getpid(), "media job ran in the worker process"
    csv_like.refresh()
    assert csv_like.return_value() == os.getpid(), "a media job marked in_process (a CSV preview) was forked"


def test_an_in_process_job_past_its_timeout_is_stopped_and_the_worker_goes_on(app):
    with app.app_context():
        svc = services()
        hung = svc.queues.enqueue("scans", "time.sleep", 30, timeout=1)
        after = svc.queues.enqueue("scans", "os.getpid")
        context.bind(app)
        build_worker(svc, ["scans"]).work(burst=True)
    hung.refresh()
    after.refresh()
    assert hung.get_status() == JobStatus.FAILED
    assert "JobTimeoutException" in (hung.latest_result().exc_string or "")
    assert after.get_status() == JobStatus.FINISHED and after.return_value() == os.getpid()


def sleep_in_postgres(seconds: float) -> None:
    from sqlalchemy import text

    from core.platform.db import db
    from jobs.context import job_context

    with job_context():
        db.session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})


def count_users() -> int:
    from sqlalchemy import func, select

    from core.platform.db import db
    from core.platform.models import User
    from jobs.context import job_context

    with job_context():
        return db.session.scalar(select(func.count()).select_from(User))


def test_a_job_stopped_inside_a_postgres_query_leaves_the_worker_a_usable_pool(app):
    # The alarm lands while psycopg waits on the server; the next job must get a working connection.
    with app.app_context():
        svc = services()
        hung = svc.queues.enqueue("maintenance", "tests.test_worker.sleep_in_postgres", 30, timeout=1)
        after = [svc.queues.enqueue("maintenance", "tests.test_worker.count_users") for _ in range(3)]
        context.bind(app)
        build_worker(svc, ["maintenance"]).work(burst=True)
    hung.refresh()
    assert hung.get_status() == JobStatus.FAILED
    assert "JobTimeoutException" in (hung.latest_result().exc_string or "")
    for job in after:
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED and job.return_value() == 0, job.latest_result().exc_string
    with app.app_context():
        from sqlalchemy import text

        from core.platform.db import db

        assert db.engine.pool.checkedout() == 0, "the interrupted connection is still checked out"
        still_sleeping = db.session.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%' "
            "AND datname = current_database()"))  # another test run's sleeps are not ours
        assert still_sleeping == 0, "the interrupted statement still runs on the server"
