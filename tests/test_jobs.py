"""Queues on the machine's Redis: nothing is enqueued before its commit, a real burst worker runs
the job with the app context, and periodic entries are enqueued once per interval."""
import hashlib
import io
from datetime import date

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.platform.db import db
from core.points.catalogue import seed_catalogue
from core.platform.models import EvidenceFile, Submission, User
from core.platform.queues import enqueue_after_commit
from core.platform.services import services
from jobs import context
from jobs.schedule import tick
from jobs.worker import build_worker


def _pending_file(app, body: bytes) -> int:
    with app.app_context():
        seed_catalogue()
        user = User(email="u@example.com", role="uploader")
        db.session.add(user)
        db.session.flush()
        sub = Submission(user_id=user.id, activity_code="EXPLORE", session_date=date.today(), status="scanning")
        db.session.add(sub)
        db.session.flush()
        key = f"evidence/{user.id}/EXPLORE/0d7c-test.csv"
        services().storage.put(key, io.BytesIO(body), len(body), "text/csv")
        f = EvidenceFile(submission_id=sub.id, user_id=user.id, activity_code="EXPLORE", storage_key=key,
                         original_name="data.csv", ext="csv", content_type="text/csv", size_bytes=len(body),
                         sha256=hashlib.sha256(body).hexdigest(), scan_state="pending")
        db.session.add(f)
        db.session.commit()
        return f.id


def test_rolled_back_work_is_never_enqueued(app):
    file_id = _pending_file(app, b"a,b\n1,2\n")
    with app.app_context():
        queue = services().queues["scans"]
        enqueue_after_commit("scans", "jobs.scans.scan_file", file_id)
        db.session.rollback()
        assert queue.count == 0
        enqueue_after_commit("scans", "jobs.scans.scan_file", file_id)
        assert queue.count == 0, "enqueued before the commit"
        db.session.commit()
        assert queue.count == 1


def test_a_savepoint_rolling_back_keeps_the_jobs_of_the_work_around_it(app):
    file_id = _pending_file(app, b"a,b\n1,2\n")
    with app.app_context():
        queue = services().queues["scans"]
        enqueue_after_commit("scans", "jobs.scans.scan_file", file_id)
        try:
            with db.session.begin_nested():  # as ledger._insert does around a possible duplicate
                db.session.execute(text("SELECT 1 / 0"))
        except DBAPIError:
            pass
        db.session.commit()
        assert queue.count == 1, "the outer transaction's job was dropped with the savepoint"


def test_a_real_burst_worker_runs_the_job_in_the_app_context(app):
    clean_id = _pending_file(app, b"a,b\n1,2\n")
    with app.app_context():
        enqueue_after_commit("scans", "jobs.scans.scan_file", clean_id)
        db.session.commit()
        svc = services()
        context.bind(app)
        build_worker(svc).work(burst=True)
        db.session.expire_all()
        evidence = db.session.get(EvidenceFile, clean_id)
        assert evidence.scan_state == "clean" and evidence.scanned_at is not None
        assert db.session.get(Submission, evidence.submission_id).status == "in_review"


def test_periodic_entries_are_enqueued_once_per_interval_across_schedulers(app):
    with app.app_context():
        queues = services().queues
        entries = [{"name": "t", "func": "jobs.outbox.deliver_due", "queue": "outbox", "interval": 30, "timeout": 60}]
        assert tick(queues, definitions=entries) == ["t"]
        assert tick(queues, definitions=entries) == []  # a second scheduler in the same interval
        assert queues["outbox"].count == 1
        queues.redis.delete(f"{queues.prefix}schedule:lock:t")  # the interval has passed
        assert tick(queues, definitions=entries) == ["t"]


def test_once_jobs_stay_single_until_the_job_starts(app):
    from core.platform.queues import clear_once

    with app.app_context():
        queue = services().queues["outbox"]
        enqueue_after_commit("outbox", "jobs.outbox.deliver_due", once="t-once")
        db.session.rollback()  # dropped even though no statement ran
        db.session.commit()
        assert queue.count == 0
        for _ in range(3):  # a burst of commits: one pending job
            enqueue_after_commit("outbox", "jobs.outbox.deliver_due", once="t-once")
            enqueue_after_commit("outbox", "jobs.outbox.deliver_due", once="t-once")
            db.session.commit()
        assert queue.count == 1
        clear_once("t-once")  # what the job does as it starts
        enqueue_after_commit("outbox", "jobs.outbox.deliver_due", once="t-once")
        db.session.commit()
        assert queue.count == 2
