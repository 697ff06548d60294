"""Outages caused for real, not simulated: a PostgreSQL cluster of the test's own is stopped while
hooks and uploads arrive, then started again; nobody acts in between."""
from __future__ import annotations

import io
import json
import os

from flask_migrate import upgrade
from sqlalchemy import func, select

from app import create_app
from core.platform.db import db
from core.platform.models import ActivityTag, EvidenceFile, KajabiEvent, Submission
from tests.evidence_support import CLEAN_PDF, run_worker, setup_people, sign_in, yesterday
from tests.services.pg_cluster import own_postgres_cluster  # noqa: F401 - a fixture

SECRET = "outage-kajabi-secret"
JSON = {"Accept": "application/json"}


def _hook(client, event_id: str, tag: str):
    body = {"id": event_id, "event": "tag_added", "payload": [
        {"type": "contacts", "id": "c-owner", "attributes": {"email": "owner@example.com"}},
        {"type": "contact_tags", "id": "t", "attributes": {"name": tag}}]}
    return client.post(f"/api/webhooks/kajabi?token={SECRET}", data=json.dumps(body), content_type="application/json",
                       headers=JSON)


def _upload(client, name: str):
    return client.post("/submissions/new", data={"activity_code": "EXPLORE", "session_date": yesterday().isoformat(),
                                                 "files": [(io.BytesIO(CLEAN_PDF), name)]},
                       content_type="multipart/form-data", headers=JSON)


def _stored_files(root: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files) if os.path.isdir(root) else []


def _assert_unavailable(response, code: str = "database_unavailable") -> None:
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert set(body) == {"type", "code", "message", "details"}
    assert (body["type"], body["code"]) == ("unavailable", code)
    assert int(response.headers["Retry-After"]) > 0


def test_postgres_stopped_while_hooks_and_uploads_arrive_answers_503_and_recovers_by_itself(
        make_app, make_settings, own_postgres_cluster):
    make_app()  # this run's Redis db, clean, for the queues
    app = create_app(make_settings(DATABASE_URL=own_postgres_cluster.url, KAJABI_WEBHOOK_SECRET=SECRET))
    with app.app_context():
        upgrade()
    setup_people(app)
    with app.app_context():
        db.session.add(ActivityTag(tag="elevate-ai-3-completed", activity_code="LEARN"))
        db.session.commit()
    storage_root = app.extensions["points"].settings.local_storage_root
    client = app.test_client()
    sign_in(client, "owner")
    assert _hook(client, "evt-before", "elevate-ai-1-completed").status_code == 202

    own_postgres_cluster.stop()
    try:
        _assert_unavailable(_hook(client, "evt-during", "elevate-ai-2-completed"))
        before = _stored_files(storage_root)
        _assert_unavailable(_upload(client, "during.pdf"))
        assert _stored_files(storage_root) == before  # no object without its row
        ready = client.get("/readyz")
        assert ready.status_code == 503
        checks = ready.get_json()["checks"]
        assert checks["database"]["ok"] is False and checks["redis"]["ok"] and checks["storage"]["ok"]
    finally:
        own_postgres_cluster.start()

    # Back, with nobody acting on the app: the pool checks its connections before use.
    assert client.get("/readyz").status_code == 200
    assert _hook(client, "evt-during", "elevate-ai-2-completed").status_code == 202  # Kajabi's retry
    assert _upload(client, "after.pdf").status_code == 302
    run_worker(app)
    with app.app_context():
        states = dict(db.session.execute(select(KajabiEvent.event_id, KajabiEvent.state)).all())
        assert states == {"evt-before": "ledgered", "evt-during": "ledgered"}  # nothing lost
        assert db.session.scalar(select(func.count()).select_from(Submission)) == 1
        [evidence] = db.session.scalars(select(EvidenceFile)).all()
        assert evidence.original_name == "after.pdf"
        db.engine.dispose()
    assert len(_stored_files(storage_root)) >= 1


def test_s3_endpoint_stopped_before_an_upload_answers_503_and_leaves_no_row_and_no_object(make_app):
    """An S3 endpoint of the test's own (moto's server; the session's shared one stays up),
    stopped for real; the upload answers 503 `storage_unavailable`; started again on the same
    port, it holds exactly the objects of the uploads that succeeded."""
    import uuid

    from moto.server import ThreadedMotoServer

    from tests.evidence_support import minio_env, stored_keys
    from tests.services.ports import free_port
    from tests.services.s3server import ACCESS_KEY, REGION, SECRET_KEY, _wait_for_port
    from tests.test_portal_uploader import _error_for

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _wait_for_port("127.0.0.1", port)
    s3 = {"endpoint": f"127.0.0.1:{port}", "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "region": REGION}
    app = make_app(**minio_env(s3, f"outage-{uuid.uuid4().hex[:12]}"))
    setup_people(app)
    client = app.test_client()
    sign_in(client, "owner")
    try:
        assert _upload(client, "before.pdf").status_code == 302
        kept = stored_keys(app)
        server.stop()
        refused = _upload(client, "during.pdf")
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0  # not the form's fault
        assert "storage" in (_error_for(refused.get_data(as_text=True), "files") or "").lower()
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Submission)) == 1
        assert client.get("/readyz").get_json()["checks"]["storage"]["ok"] is False
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        _wait_for_port("127.0.0.1", port)
        assert stored_keys(app) == kept  # nothing of the refused upload
        assert client.get("/readyz").get_json()["checks"]["storage"]["ok"] is True
        assert _upload(client, "after.pdf").status_code == 302
    finally:
        server.stop()


def test_clamd_stopped_half_way_through_uploads_serves_nothing_unscanned_then_all_clean(make_app, clamd_server):
    import time

    clamd_server.start()
    app = make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.url, CLAMD_TIMEOUT_SECONDS=10)
    setup_people(app)
    client = app.test_client()
    sign_in(client, "owner")

    def files() -> dict[int, str]:
        with app.app_context():
            return dict(db.session.execute(select(EvidenceFile.id, EvidenceFile.scan_state)).all())

    for n in range(2):
        assert _upload(client, f"first-{n}.pdf").status_code == 302
    run_worker(app, with_scheduler=True)
    clamd_server.stop()
    try:
        for n in range(3):
            assert _upload(client, f"second-{n}.pdf").status_code == 302
        run_worker(app, with_scheduler=True)  # the scans fail and wait for their retry
        states = files()
        assert sorted(states.values()) == ["clean"] * 2 + ["pending"] * 3
        for file_id, state in states.items():
            response = client.get(f"/api/files/{file_id}", headers=JSON)
            assert response.status_code == (200 if state == "clean" else 409), (state, response.status_code)
            response.close()
    finally:
        clamd_server.start()
    # Nobody acts: RQ's scheduler runs each retry when its back-off comes due.
    deadline = time.monotonic() + 90
    while set(files().values()) != {"clean"} and time.monotonic() < deadline:
        time.sleep(1)
        run_worker(app, with_scheduler=True)
    assert set(files().values()) == {"clean"}
    for file_id in files():
        with client.get(f"/api/files/{file_id}", headers=JSON) as response:
            assert response.status_code == 200


def test_postgres_restarted_between_requests_the_next_hook_page_and_job_get_fresh_connections(
        make_app, make_settings, own_postgres_cluster):
    """A restart with no request in between: the pool still holds connections the old server
    closed. The pool replaces them at checkout (core.platform.db.drop_dead_on_checkout, no round
    trip), so the first hook, the first page and the first job after it all work."""
    make_app()
    app = create_app(make_settings(DATABASE_URL=own_postgres_cluster.url, KAJABI_WEBHOOK_SECRET=SECRET))
    with app.app_context():
        upgrade()
    setup_people(app)
    client = app.test_client()
    sign_in(client, "owner")
    assert _hook(client, "evt-before", "elevate-ai-1-completed").status_code == 202
    assert _upload(client, "before.pdf").status_code == 302  # the ORM session's connection is pooled too

    own_postgres_cluster.stop()
    own_postgres_cluster.start()

    assert _hook(client, "evt-after", "elevate-ai-2-completed").status_code == 202
    assert _upload(client, "after.pdf").status_code == 302
    run_worker(app)
    with app.app_context():
        states = dict(db.session.execute(select(KajabiEvent.event_id, KajabiEvent.state)).all())
        assert states == {"evt-before": "ledgered", "evt-after": "ledgered"}
        assert db.session.scalar(select(func.count()).select_from(Submission)) == 2
        db.engine.dispose()
