"""Retention on the local backend (files backdated with os.utime), the cron routes, and the CLI."""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from core.accounts.users import create_user
from core.platform.db import db
from core.platform.models import EvidenceFile, Run
from core.retention.enforcement import enforce_user_retention, plan_batch, users_total
from tests.evidence_support import CLEAN_PDF, png, run_worker, setup_people, sign_in, stored_keys, submit

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SECRET = "cron-secret-0123456789abcdef"


def backdate(app, key: str, when: datetime) -> None:
    path = os.path.join(app.extensions["points"].storage.root, *key.split("/"))
    os.utime(path, (when.timestamp(), when.timestamp()))


def rows(app, *ids: int) -> list[EvidenceFile]:
    with app.app_context():
        found = [db.session.get(EvidenceFile, i) for i in ids]
        for row in found:
            db.session.expunge(row)
        return found


@pytest.fixture
def aged(app):
    """owner: an old image (object and thumbnail just older than the cutoff), a young image (just
    younger), an old infected file (no object); other: an old image that owner's run must not touch."""
    people = setup_people(app)
    _, [old_id, young_id] = submit(app, people["owner"], [("old.png", png()), ("young.png", png())])
    _, [infected_id] = submit(app, people["owner"], [("eicar.csv", EICAR)])
    _, [others_id] = submit(app, people["other"], [("theirs.pdf", CLEAN_PDF)])
    run_worker(app)
    cutoff = datetime.now(timezone.utc) - timedelta(days=730)
    old, young, infected, others = rows(app, old_id, young_id, infected_id, others_id)
    assert old.thumbnail_key and young.thumbnail_key and infected.scan_state == "infected"
    for key in (old.storage_key, old.thumbnail_key, others.storage_key):
        backdate(app, key, cutoff - timedelta(minutes=1))
    for key in (young.storage_key, young.thumbnail_key):
        backdate(app, key, cutoff + timedelta(minutes=1))
    with app.app_context():
        db.session.execute(text("UPDATE evidence_files SET created_at = :t WHERE id IN (:a, :b)"),
                           {"t": cutoff - timedelta(days=1), "a": infected_id, "b": old_id})
        db.session.commit()
    return {"people": people, "cutoff": cutoff, "old": old, "young": young, "infected": infected, "others": others}


def test_old_objects_and_thumbnails_go_young_ones_stay_and_a_second_run_does_nothing(app, aged):
    owner, cutoff = aged["people"]["owner"], aged["cutoff"]
    old, young, others = aged["old"], aged["young"], aged["others"]
    with app.app_context():
        counts = enforce_user_retention(owner, cutoff)
    # The old image's preview goes with it, although the preview itself is young.
    assert counts.as_dict() == {"objects_deleted": 1, "thumbnails_deleted": 1, "rows_marked": 2, "failed": 0,
                                 "previews_deleted": 1}
    keys = stored_keys(app)
    assert old.storage_key not in keys and old.thumbnail_key not in keys
    assert not any(old.uuid in k for k in keys) and any(k.startswith("previews/") and young.uuid in k for k in keys)
    assert {young.storage_key, young.thumbnail_key, others.storage_key} <= set(keys)
    new_old, new_young, new_infected, new_others = rows(app, old.id, young.id, aged["infected"].id, others.id)
    assert new_old.deleted_at is not None and new_infected.deleted_at is not None
    assert new_young.deleted_at is None and new_others.deleted_at is None

    with app.app_context():
        again = enforce_user_retention(owner, cutoff)
    assert again.as_dict() == {"objects_deleted": 0, "thumbnails_deleted": 0, "rows_marked": 0, "failed": 0,
                                "previews_deleted": 0}
    assert stored_keys(app) == keys

    client = app.test_client()
    sign_in(client, "owner")
    response = client.get(f"/api/files/{old.id}")
    assert response.status_code == 410 and response.json["code"] == "file_deleted"
    with client.get(f"/api/files/{young.id}") as response:
        assert response.status_code == 200


def test_dry_run_changes_nothing_then_the_cli_deletes(app, aged):
    before = stored_keys(app)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["retention", "run", "--days", "730", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would delete: 2 files, 1 thumbnails; rows marked: 3" in result.output
    assert stored_keys(app) == before
    with app.app_context():
        assert db.session.query(EvidenceFile).filter(EvidenceFile.deleted_at.isnot(None)).count() == 0
        assert db.session.query(Run).count() == 0

    result = runner.invoke(args=["retention", "run", "--days", "730"])
    assert result.exit_code == 0, result.output
    assert "deleted: 2 files, 1 thumbnails; rows marked: 3" in result.output  # both users' old files
    assert aged["others"].storage_key not in stored_keys(app)
    with app.app_context():
        run = db.session.query(Run).one()
        assert (run.kind, run.status, run.counts["objects_deleted"]) == ("retention", "finished", 2)


def test_cli_fails_with_one_line(make_app, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    app = make_app(LOCAL_STORAGE_ROOT=str(blocker))
    setup_people(app)
    result = app.test_cli_runner().invoke(args=["retention", "run", "--days", "30"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: retention failed: ")


# -- cron routes -------------------------------------------------------------------------------

def cron(client, path: str, token: str | None = SECRET):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get(path, headers=headers)


def test_cron_is_off_without_a_secret(app):
    response = cron(app.test_client(), "/api/cron/enforce-retention")
    assert response.status_code == 503 and response.json["code"] == "not_configured"
    assert cron(app.test_client(), "/api/cron/jobs/retention-1").status_code == 503


def test_cron_auth_and_parameters(make_app):
    app = make_app(CRON_SECRET=SECRET)
    client = app.test_client()
    assert cron(client, "/api/cron/enforce-retention", None).status_code == 401
    assert cron(client, "/api/cron/enforce-retention", None).json["code"] == "unauthenticated"
    response = cron(client, "/api/cron/enforce-retention", "wrong")
    assert response.status_code == 401 and response.json["code"] == "invalid_token"  # RFC 6750
    assert client.get("/api/cron/enforce-retention", headers={"Authorization": SECRET}).status_code == 401
    response = cron(client, "/api/cron/enforce-retention?days=0&limit=abc&offset=-1")
    assert response.status_code == 400 and response.json["code"] == "invalid_parameter"
    assert [d["field"] for d in response.json["details"]] == ["days", "limit", "offset"]
    assert cron(client, "/api/cron/enforce-retention?limit=1001").status_code == 400
    superscript = cron(client, "/api/cron/enforce-retention?days=%C2%B2")  # "²": a digit to str.isdigit()
    assert superscript.status_code == 400 and superscript.json["code"] == "invalid_parameter"
    assert cron(client, "/api/cron/enforce-retention").status_code == 202
    response = cron(client, "/api/cron/jobs/nope")
    assert response.status_code == 404 and response.json["code"] == "job_not_found"


def test_cron_pages_cover_every_user_once_and_jobs_report_counts(make_app):
    app = make_app(CRON_SECRET=SECRET)
    people = setup_people(app)
    with app.app_context():
        create_user("fifth@example.com", "uploader", "long-enough-pw")
        db.session.commit()
        all_ids = plan_batch(100, 0)
        assert users_total() == 5 and len(all_ids) == 5
    _, [file_id] = submit(app, people["owner"], [("old.pdf", CLEAN_PDF)])
    run_worker(app)
    key = rows(app, file_id)[0].storage_key
    backdate(app, key, datetime.now(timezone.utc) - timedelta(days=40))

    client = app.test_client()
    queue = app.extensions["points"].queues["maintenance"]
    offsets, answers, offset = [], [], 0
    while offset is not None:
        offsets.append(offset)
        response = cron(client, f"/api/cron/enforce-retention?days=30&limit=2&offset={offset}")
        assert response.status_code == 202
        answers.append(response.json)
        offset = response.json["next_offset"]
    assert offsets == [0, 2, 4] and [a["users_in_batch"] for a in answers] == [2, 2, 1]
    jobs = [queue.fetch_job(a["job_id"]) for a in answers]
    covered = [uid for job in jobs for uid in job.args[0]]
    assert covered == all_ids  # every user exactly once, in id order
    assert queue.count == 3  # one job per batch

    run_worker(app)
    assert key not in stored_keys(app)
    states = [cron(client, f"/api/cron/jobs/{a['job_id']}").json for a in answers]
    assert [s["state"] for s in states] == ["finished"] * 3
    assert sum(s["counts"]["objects_deleted"] for s in states) == 1
    assert sum(s["run"]["counts"]["users"] for s in states) == 5
    with app.app_context():
        assert {r.status for r in db.session.query(Run).filter_by(kind="retention")} == {"finished"}

    # Running a batch again is harmless.
    again = cron(client, "/api/cron/enforce-retention?days=30&limit=200")
    run_worker(app)
    assert cron(client, f"/api/cron/jobs/{again.json['job_id']}").json["counts"]["objects_deleted"] == 0


def test_a_batch_whose_job_was_lost_is_queued_again_and_finishes(make_app):
    app = make_app(CRON_SECRET=SECRET)
    people = setup_people(app)
    _, [file_id] = submit(app, people["owner"], [("old.pdf", CLEAN_PDF)])
    run_worker(app)
    key = rows(app, file_id)[0].storage_key
    backdate(app, key, datetime.now(timezone.utc) - timedelta(days=40))
    client = app.test_client()
    answer = cron(client, "/api/cron/enforce-retention?days=30&limit=200").json
    queue = app.extensions["points"].queues["maintenance"]
    queue.empty()  # Redis lost the job: the run would stay "queued" for ever
    from core.retention.enforcement import requeue_lost_batches

    with app.app_context():
        assert requeue_lost_batches() == 0  # too young to call lost
        later = datetime.now(timezone.utc) + timedelta(hours=3)
        assert requeue_lost_batches(now=later) == 1
        assert requeue_lost_batches(now=later) == 0  # queued now: not twice
    assert [job.id for job in queue.jobs] == [answer["job_id"]]
    run_worker(app)
    assert key not in stored_keys(app)
    status = cron(client, f"/api/cron/jobs/{answer['job_id']}").json
    assert status["state"] == "finished" and status["run"]["status"] == "finished"
    with app.app_context():
        assert requeue_lost_batches(now=datetime.now(timezone.utc) + timedelta(hours=3)) == 0  # finished


def test_a_run_now_job_stopped_by_its_timeout_is_marked_failed(app):
    """The admin's "Run now" job waits on a file row another session has locked, and RQ stops it.
    The run is marked failed on a connection of its own (the job's is still busy with the
    interrupted statement), so it does not stay `running` for ever."""
    import threading

    import psycopg
    from rq.job import JobStatus
    from sqlalchemy.engine import make_url

    from jobs import context
    from jobs.worker import build_worker
    from tests.conftest import DATABASE_URL

    people = setup_people(app)
    _, [file_id] = submit(app, people["owner"], [("a.pdf", CLEAN_PDF)])
    run_worker(app)
    with app.app_context():  # old enough that retention looks at (and locks) its row
        db.session.execute(text("UPDATE evidence_files SET created_at = now() - interval '800 days'"))
        db.session.commit()
    dsn = make_url(DATABASE_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    holder = psycopg.connect(dsn)  # another session holds the owner's file row for 6 s
    holder.execute("SELECT id FROM evidence_files WHERE id = %s FOR UPDATE", (file_id,))
    release = threading.Timer(6.0, holder.rollback)
    release.start()
    try:
        svc = app.extensions["points"]
        job = svc.queues.enqueue("maintenance", "jobs.retention.run_all", 730, "admin@example.com", timeout=2)
        context.bind(app)
        build_worker(svc, ["maintenance"]).work(burst=True)
    finally:
        release.join()
        holder.close()
    job.refresh()
    assert job.get_status() == JobStatus.FAILED
    assert job.latest_result().exc_string.strip().splitlines()[-1].startswith("rq.timeouts.JobTimeoutException")
    with app.app_context():
        run = db.session.query(Run).filter_by(kind="retention").one()
        assert (run.status, run.counts["error"]) == ("failed", "stopped by the job's timeout")
