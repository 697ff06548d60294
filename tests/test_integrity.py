"""Integrity of stored evidence: the sweep re-reads stored objects, newest first and bounded per
run; a tampered or missing object quarantines the file (410 `file_quarantined` from the files
API and from local links, an audit event, a metric); a local download checks while it streams."""
from __future__ import annotations

import hashlib
import io
import os
import uuid
from datetime import timedelta

import pytest
import requests

from core.evidence import integrity
from core.platform.db import db, utcnow
from core.platform.models import AuditEvent, EvidenceFile
from jobs import context
from tests.evidence_support import CLEAN_PDF, PASSWORD, minio_env, run_worker, setup_people, sign_in, submit

TOKEN = "metrics-token-0123456789"


def _clean_files(app, count: int = 1) -> tuple[dict, list[int]]:
    people = setup_people(app)
    ids = []
    for i in range(count):
        _, [file_id] = submit(app, people["owner"], [(f"report-{i}.pdf", CLEAN_PDF + f"% {i}\n".encode())])
        ids.append(file_id)
    run_worker(app)
    return people, ids


def _tamper(app, file_id: int, data: bytes = b"%PDF-1.4 altered in storage\n") -> None:
    """Overwrite the stored object behind the app's back (through the backend, so it works for both)."""
    with app.app_context():
        key = db.session.get(EvidenceFile, file_id).storage_key
    app.extensions["points"].storage.put(key, io.BytesIO(data), len(data), "application/pdf")


def _sweep(app, **kwargs) -> dict:
    with app.app_context():
        return integrity.sweep(app.extensions["points"].storage, **kwargs)


@pytest.mark.parametrize("backend", ["local", "minio"])
def test_sweep_finds_a_tampered_object_and_the_files_api_refuses_it(make_app, request, backend):
    env = minio_env(request.getfixturevalue("s3_endpoint"), f"t-{uuid.uuid4().hex[:12]}") if backend == "minio" else {}
    app = make_app(ENABLE_INTERNAL_ENDPOINTS="1", INTERNAL_METRICS_TOKEN=TOKEN, **env)
    _people, [good, bad] = _clean_files(app, 2)
    client = app.test_client()
    sign_in(client, "reviewer")
    assert client.get(f"/api/files/{bad}").status_code in (200, 302)  # served while intact

    _tamper(app, bad)
    assert _sweep(app) == {"checked": 2, "ok": 1, "quarantined": 1, "bytes": pytest.approx(2 * len(CLEAN_PDF), abs=10)}

    for path in (f"/api/files/{bad}", f"/api/files/{bad}/signed-url"):
        response = client.get(path)
        assert response.status_code == 410 and response.get_json()["code"] == "file_quarantined"
    batch = client.post("/api/files/signed-urls", json={"file_ids": [good, bad]}).get_json()
    assert [u["file_id"] for u in batch["urls"]] == [good]
    assert batch["errors"] == [{"file_id": bad, "code": "file_quarantined", "message": batch["errors"][0]["message"]}]
    assert client.get(f"/api/files/{good}").status_code in (200, 302)
    with app.app_context():
        file = db.session.get(EvidenceFile, bad)
        assert (file.integrity_state, file.quarantined_at is not None) == ("mismatch", True)
        event = db.session.query(AuditEvent).filter_by(action="file.quarantined", subject_id=str(bad)).one()
        assert event.details["expected_sha256"] == file.sha256 and event.details["actual_sha256"] != file.sha256
        assert db.session.get(EvidenceFile, good).last_verified_at is not None
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True)
    assert "points_files_quarantined 1.0" in metrics
    # Quarantine is for good: the next sweeps skip both (one is verified, one quarantined).
    assert _sweep(app)["checked"] == 0


def test_a_missing_object_is_quarantined_as_missing(app):
    _people, [file_id] = _clean_files(app)
    with app.app_context():
        app.extensions["points"].storage.delete(db.session.get(EvidenceFile, file_id).storage_key)
    assert _sweep(app)["quarantined"] == 1
    with app.app_context():
        assert db.session.get(EvidenceFile, file_id).integrity_state == "missing"


def test_work_per_run_is_bounded_newest_first_then_least_recently_verified(app):
    _people, ids = _clean_files(app, 4)
    now = utcnow()
    with app.app_context():
        for age, file_id in enumerate(ids):  # ids[0] is the oldest upload
            db.session.get(EvidenceFile, file_id).created_at = now - timedelta(hours=10 - age)
        db.session.commit()
    assert _sweep(app, max_files=2)["checked"] == 2
    with app.app_context():
        verified = {f.id for f in db.session.query(EvidenceFile).filter(EvidenceFile.last_verified_at.is_not(None))}
    assert verified == {ids[3], ids[2]}  # the two newest uploads
    assert _sweep(app, max_files=10, max_bytes=1)["checked"] == 1  # the byte budget stops the run after one file
    assert _sweep(app, max_files=10)["checked"] == 1
    assert _sweep(app)["checked"] == 0  # everything verified within REVERIFY_AFTER
    later = now + integrity.REVERIFY_AFTER + timedelta(minutes=1)
    assert _sweep(app, now=later)["checked"] == 4  # due again a week later


def test_a_local_download_of_altered_bytes_fails_and_asks_for_a_check(app, live_server, redis_conn):
    _people, [file_id] = _clean_files(app)
    big = os.urandom(600 * 1024)  # several chunks: the altered bytes are streamed in part, never whole
    with app.app_context():
        file = db.session.get(EvidenceFile, file_id)
        file.sha256 = hashlib.sha256(b"what was uploaded").hexdigest()
        db.session.commit()
    _tamper(app, file_id, big)
    http = requests.Session()
    http.post(f"{live_server}/login", data={"email": "owner@example.com", "password": PASSWORD}, timeout=10)
    link = http.get(f"{live_server}/api/files/{file_id}/signed-url", timeout=10).json()["url"]
    for url in (f"{live_server}/api/files/{file_id}", live_server + link):
        with pytest.raises(requests.exceptions.RequestException):
            body = http.get(url, timeout=10).content
            assert body != big  # never reached: the stream breaks before its last bytes
    # Each failed stream queued an integrity check of that file; running it quarantines the file.
    context.bind(app)
    run_worker(app)
    with app.app_context():
        assert db.session.get(EvidenceFile, file_id).integrity_state == "mismatch"
    assert http.get(live_server + link, timeout=10).json()["code"] == "file_quarantined"
    assert http.get(f"{live_server}/api/files/{file_id}", timeout=10).status_code == 410


def test_an_intact_local_download_streams_whole(app, live_server):
    people = setup_people(app)
    data = CLEAN_PDF + b"%" + b"x" * (700 * 1024) + b"\n"  # three chunks and a bit
    _, [file_id] = submit(app, people["owner"], [("big.pdf", data)])
    run_worker(app)
    http = requests.Session()
    http.post(f"{live_server}/login", data={"email": "owner@example.com", "password": PASSWORD}, timeout=10)
    response = http.get(f"{live_server}/api/files/{file_id}", timeout=10)
    assert response.status_code == 200 and response.content == data


def test_the_scheduled_job_runs_the_sweep_in_a_real_worker(app):
    from jobs.schedule import periodic_job_definitions

    _people, [file_id] = _clean_files(app)
    _tamper(app, file_id)
    entry = {e["name"]: e for e in periodic_job_definitions()}["integrity-sweep"]
    job = app.extensions["points"].queues.enqueue(entry["queue"], entry["func"], timeout=entry["timeout"])
    run_worker(app)
    job.refresh()
    assert job.get_status() == "finished" and job.return_value()["quarantined"] == 1
    with app.app_context():
        assert db.session.get(EvidenceFile, file_id).integrity_state == "mismatch"
