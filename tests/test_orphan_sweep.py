"""The orphan sweep (core/evidence/orphans.py, break report api-jobs #4) on real storage (local
and MinIO over S3) and PostgreSQL: an object a killed web worker left without its row goes once
it is older than the grace period, never before; everything a row points at stays."""
from __future__ import annotations

import io
import os
import time
import uuid
from datetime import timedelta

import pytest

from core.evidence import orphans, pending
from core.platform.db import db, utcnow
from core.platform.models import AuditEvent, EvidenceFile
from jobs.schedule import periodic_job_definitions
from tests.evidence_support import CLEAN_PDF, incoming, minio_env, png, run_worker, setup_people, stored_keys, submit


def put(app, key: str, data: bytes = b"%PDF-1.4 orphan") -> str:
    # What a worker SIGKILLed between storage.put and the commit leaves: the object, no row.
    app.extensions["points"].storage.put(key, io.BytesIO(data), len(data), "application/octet-stream")
    return key


def sweep(app, **kwargs) -> dict:
    with app.app_context():
        svc = app.extensions["points"]
        return orphans.sweep(svc.storage, svc.redis, redis_prefix=svc.queues.prefix, **kwargs)


@pytest.mark.parametrize("backend", ["local", "minio"])
def test_an_object_without_its_row_goes_after_the_grace_period_and_live_objects_stay(make_app, request, backend):
    env = minio_env(request.getfixturevalue("s3_endpoint"), f"t-{uuid.uuid4().hex[:12]}") if backend == "minio" else {}
    app = make_app(**env)
    people = setup_people(app)
    owner = people["owner"]
    _, [pdf_id, png_id] = submit(app, owner, [("a.pdf", CLEAN_PDF), ("b.png", png())])
    run_worker(app)  # scans, the thumbnail and the previews of the live files
    with app.app_context():
        kept = [row.storage_key for row in pending.keep(owner, "EXPLORE", [incoming("kept.pdf", CLEAN_PDF)])]
        assert len(kept) == 1
        image = db.session.get(EvidenceFile, png_id)
        assert image.thumbnail_key  # a live file's thumbnail, which must stay
        live_uuid = db.session.get(EvidenceFile, pdf_id).uuid
    # A thumbnail job killed before attaching its object: the live file keeps it.
    unattached = put(app, f"thumbnails/{owner}/EXPLORE/{live_uuid}.jpg", b"jpeg")
    put(app, f"previews/{owner}/EXPLORE/{live_uuid}/page-1.png", b"png")  # a live file's preview
    gone = uuid.uuid4()
    lost = {put(app, f"evidence/{owner}/EXPLORE/{uuid.uuid4()}.pdf"),
            put(app, f"thumbnails/{owner}/EXPLORE/{gone}.jpg", b"jpeg"),
            put(app, f"previews/{owner}/EXPLORE/{gone}/page-1.png", b"png")}
    everything = set(stored_keys(app))
    assert unattached in everything and lost <= everything

    now = utcnow()
    assert sweep(app, now=now)["deleted"] == 0  # just written: an upload may still be committing
    assert sweep(app, now=now + timedelta(minutes=59))["deleted"] == 0
    assert set(stored_keys(app)) == everything

    counts = sweep(app, now=now + timedelta(minutes=61))
    assert counts["deleted"] == 3 and counts["failed"] == 0 and counts["wrapped"]
    assert set(stored_keys(app)) == everything - lost  # rows, pending uploads, thumbnails, previews stay
    with app.app_context():
        audited = {e.details["key"] for e in db.session.query(AuditEvent).filter_by(action="storage.orphan_deleted")}
    assert audited == lost
    assert sweep(app, now=now + timedelta(minutes=61))["deleted"] == 0  # twice is harmless
    assert set(kept) <= set(stored_keys(app))


def test_a_file_marked_deleted_loses_its_leftover_objects(app):
    # A correction or retention marks the row deleted and deletes best effort; a failed delete
    # used to leave the object (and its thumbnail) for ever.
    owner = setup_people(app)["owner"]
    _, [file_id] = submit(app, owner, [("b.png", png())])
    run_worker(app)
    with app.app_context():
        file = db.session.get(EvidenceFile, file_id)
        file.deleted_at = utcnow()
        leftovers = {file.storage_key, file.thumbnail_key}
        db.session.commit()
    before = stored_keys(app)  # the original, its thumbnail and its preview
    assert leftovers <= set(before) and any(k.startswith("previews/") for k in before)
    assert sweep(app, now=utcnow() + timedelta(hours=2))["deleted"] == len(before) == 3
    assert stored_keys(app) == []


def test_each_run_is_bounded_and_the_next_run_carries_on_from_its_cursor(app):
    setup_people(app)
    lost = {put(app, f"evidence/9/EXPLORE/{n}-{uuid.uuid4()}.pdf") for n in range(5)}
    later = utcnow() + timedelta(hours=2)
    runs = [sweep(app, now=later, max_deleted=2) for _ in range(3)]
    assert [r["deleted"] for r in runs] == [2, 2, 1]
    assert [r["wrapped"] for r in runs] == [False, False, True]
    assert not lost & set(stored_keys(app))
    assert sweep(app, now=later, max_listed=1)["listed"] == 0  # wrapped: starts over, nothing old left


def test_the_scheduled_job_deletes_an_old_orphan(app):
    entry = {e["name"]: e for e in periodic_job_definitions()}["orphan-sweep"]
    assert entry["func"] == "jobs.uploads.sweep_orphans" and entry["interval"] <= 3600
    key = put(app, f"evidence/3/EXPLORE/{uuid.uuid4()}.pdf")
    young = put(app, f"evidence/3/EXPLORE/{uuid.uuid4()}.pdf")
    two_hours_ago = time.time() - 7200  # the local store can be backdated; S3 cannot
    os.utime(os.path.join(app.extensions["points"].storage.root, *key.split("/")), (two_hours_ago, two_hours_ago))
    job = app.extensions["points"].queues.enqueue(entry["queue"], entry["func"], timeout=entry["timeout"])
    run_worker(app)
    job.refresh()
    assert job.get_status() == "finished" and job.return_value()["deleted"] == 1
    assert stored_keys(app) == [young]
