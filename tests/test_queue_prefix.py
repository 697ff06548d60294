"""QUEUE_PREFIX covers RQ job ids, not only queue names (break report api-jobs #5): two
deployments on one Redis use the same logical ids (`retention-<run>`, `scan-file-<id>-upload`)
without overwriting or reading each other's jobs."""
from __future__ import annotations

from redis import Redis
from rq.job import JOB_ID_PATTERN

from core.platform.queues import job_id_prefix, job_statuses
from tests.conftest import REDIS_URL
from tests.evidence_support import CLEAN_PDF, run_worker, setup_people, submit

SECRET = "cron-secret-for-prefix-tests-0123456789"
BATCH = "jobs.retention.enforce_batch"


def two_deployments(make_app):
    a = make_app(QUEUE_PREFIX="depa:", CRON_SECRET=SECRET)
    b = make_app(QUEUE_PREFIX="depb:", CRON_SECRET=SECRET)
    return a, b, a.extensions["points"].queues, b.extensions["points"].queues


def test_the_same_logical_job_id_does_not_overwrite_the_other_deployments_job(make_app):
    a, b, qa, qb = two_deployments(make_app)
    ja = qa.enqueue("maintenance", BATCH, [1], "2099-01-01T00:00:00+00:00", 1, job_id="retention-1")
    jb = qb.enqueue("maintenance", BATCH, [2, 3], "2099-01-01T00:00:00+00:00", 1, job_id="retention-1")

    assert ja.id != jb.id and all(JOB_ID_PATTERN.fullmatch(j.id) for j in (ja, jb))
    assert qa.fetch("retention-1").args[0] == [1]  # A's own batch, not B's users
    assert qb.fetch("retention-1").args[0] == [2, 3]
    assert qa["maintenance"].job_ids == [ja.id] and qb["maintenance"].job_ids == [jb.id]
    assert not Redis.from_url(REDIS_URL).exists("rq:job:retention-1")  # no unprefixed key to collide on

    # A's upload queues its scan under A's prefix; B does not see it (nor skip its own for it).
    setup_people(a)
    _, [file_id] = submit(a, 1, [("a.pdf", CLEAN_PDF)])
    logical = f"scan-file-{file_id}-upload"
    assert job_statuses(qa, [logical, "retention-1"]) == ["queued", "queued"]
    assert job_statuses(qb, [logical, "retention-1"]) == [None, "queued"]
    assert qb["scans"].count == 0


def test_each_cron_route_reports_its_own_job_under_the_id_it_returned(make_app):
    a, b, qa, qb = two_deployments(make_app)
    setup_people(a)
    answer = a.test_client().get("/api/cron/enforce-retention?days=30&limit=200",
                                 headers={"Authorization": f"Bearer {SECRET}"})
    assert answer.status_code == 202
    job_id = answer.json["job_id"]
    assert job_id == f"retention-{answer.json['run_id']}"  # the id callers see stays unprefixed
    qb.enqueue("maintenance", BATCH, [999], "2099-01-01T00:00:00+00:00", answer.json["run_id"], job_id=job_id)

    run_worker(a)  # A's worker runs A's batch only
    status = a.test_client().get(f"/api/cron/jobs/{job_id}", headers={"Authorization": f"Bearer {SECRET}"}).json
    assert status["state"] == "finished" and status["counts"]["users"] == 4
    assert qb.fetch(job_id).get_status() == "queued"  # B's job with the same id is untouched
    other = b.test_client().get(f"/api/cron/jobs/{job_id}", headers={"Authorization": f"Bearer {SECRET}"}).json
    assert other["state"] == "queued"


def test_job_id_prefixes_are_rq_safe_and_distinct():
    assert job_id_prefix("") == "" and job_id_prefix("dep_a-") == "dep_a-"
    spelled = [job_id_prefix(p) for p in ("breaka:", "breaka_", "breaka.", "a b/")]
    assert len(set(spelled)) == 4 and all(JOB_ID_PATTERN.fullmatch(p) for p in spelled)
