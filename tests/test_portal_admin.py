"""Admin pages: users and roles, the catalogue and tag mappings, unmatched Kajabi events attached
and reprocessed, outbox dead letters retried, retention dry-run then run, backfill runs, reviewer
progress and the job queues."""
from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone

from core.platform import audit
from core.platform.db import db
from core.platform.models import Activity, ActivityTag, AuditEvent, KajabiEvent, LedgerEntry, OutboxRecord, Run, User
from tests.test_portal_support import flashes, in_review, people, run_worker, sign_in


def _admin(app):
    client = app.test_client()
    sign_in(client, "admin")
    return client


def test_users_and_roles(app):
    ids = people(app)
    client = _admin(app)
    html = client.get("/admin/users").get_data(as_text=True)
    assert "owner@example.com" in html and 'name="csrf_token"' in html

    page = client.post(f"/admin/users/{ids['other']}/role", data={"role": "reviewer", "active": "y"},
                       follow_redirects=True)
    assert "other@example.com is now reviewer." in flashes(page)
    page = client.post(f"/admin/users/{ids['admin']}/role", data={"role": "uploader", "active": "y"},
                       follow_redirects=True)
    assert any("cannot remove your own admin role" in m for m in flashes(page))

    page = client.post("/admin/users", data={"email": "New.Person@Example.com", "name": "New", "role": "uploader"})
    assert page.status_code == 201 and page.headers["Cache-Control"] == "no-store"
    [password] = re.findall(r"Their password is <code>([^<]+)</code>", page.get_data(as_text=True))
    # Shown on that page only: not in the session cookie (signed, not encrypted), not on the next page.
    assert password not in page.headers.get("Set-Cookie", "") and not flashes(client.get("/admin/users"))
    with app.app_context():
        from core.accounts.users import authenticate
        assert authenticate("new.person@example.com", password, "127.0.0.1").role == "uploader"
    page = client.post("/admin/users", data={"email": "chosen@example.com", "role": "uploader",
                                             "password": "a-chosen-password"}, follow_redirects=True)
    assert "Created chosen@example.com as uploader." in flashes(page)
    duplicate = client.post("/admin/users", data={"email": "new.person@example.com", "role": "uploader"})
    assert duplicate.status_code == 400 and "already exists" in duplicate.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, ids["other"]).role == "reviewer"
        assert db.session.get(User, ids["admin"]).role == "admin"
        assert db.session.query(AuditEvent).filter_by(action="user.role_changed").count() == 1


def test_catalogue_and_tag_mappings(app):
    people(app)
    client = _admin(app)
    assert "elevate-ai-1-completed" in client.get("/admin/catalogue").get_data(as_text=True)
    page = client.post("/admin/activities/PRESENT", data={"name": "Present", "points": "25", "cap_points": "25",
                                                          "cap_period": "once", "active": "y"}, follow_redirects=True)
    assert "Saved PRESENT." in flashes(page)
    page = client.post("/admin/tags", data={"tag": "  Elevate-AI-3-Completed ", "activity_code": "LEARN"},
                       follow_redirects=True)
    assert "Mapped tag elevate-ai-3-completed to LEARN." in flashes(page)
    page = client.post("/admin/tags", data={"tag": "elevate-ai-3-completed", "activity_code": "LEARN"},
                       follow_redirects=True)
    assert any("already mapped" in m for m in flashes(page))
    page = client.post("/admin/tags/remove", data={"tag": "elevate-ai-2-completed"}, follow_redirects=True)
    assert "Removed the tag mapping." in flashes(page)
    with app.app_context():
        assert db.session.get(Activity, "PRESENT").points == 25
        assert {t.tag for t in db.session.query(ActivityTag)} == {"elevate-ai-1-completed", "elevate-ai-3-completed"}


def test_attach_an_unmatched_kajabi_event_then_reprocess(app):
    ids = people(app)
    with app.app_context():
        event = KajabiEvent(event_id="evt-1", event_type="tag_added", payload={}, contact_id="contact-9",
                            email="someone-else@example.com", tag="elevate-ai-1-completed", state="queued_unmatched",
                            result_code="unmatched_contact")
        db.session.add(event)
        db.session.commit()
        event_id = event.id
    client = _admin(app)
    assert "contact-9" in client.get("/admin/kajabi").get_data(as_text=True)
    page = client.post(f"/admin/kajabi/{event_id}/attach", data={"email": "owner@example.com"}, follow_redirects=True)
    assert "Attached and reprocessed: the event is now ledgered." in flashes(page)
    with app.app_context():
        assert db.session.get(User, ids["owner"]).kajabi_contact_id == "contact-9"
        entry = db.session.query(LedgerEntry).one()
        assert (entry.user_id, entry.activity_code, entry.delta_points) == (ids["owner"], "LEARN", 10)
    page = client.post(f"/admin/kajabi/{event_id}/attach", data={"email": "owner@example.com"}, follow_redirects=True)
    assert any("not waiting for a user" in m for m in flashes(page))


def test_outbox_dead_letters_are_retried(app):
    people(app)
    with app.app_context():
        db.session.add_all([OutboxRecord(topic="ledger", idempotency_key=f"k{i}", payload={}, status="dead",
                                         attempts=8, last_error="sink down") for i in range(2)])
        db.session.commit()
        first = db.session.query(OutboxRecord).order_by(OutboxRecord.id).first().id
    client = _admin(app)
    assert "sink down" in client.get("/admin/outbox").get_data(as_text=True)
    page = client.post("/admin/outbox/retry", data={"record_id": str(first)}, follow_redirects=True)
    assert "1 dead record(s) queued for delivery again." in flashes(page)
    page = client.post("/admin/outbox/retry", follow_redirects=True)
    assert "1 dead record(s) queued for delivery again." in flashes(page)
    with app.app_context():
        assert {(r.status, r.attempts) for r in db.session.query(OutboxRecord)} == {("pending", 0)}


def test_a_mangled_outbox_record_id_retries_nothing(app):
    """Only an absent record_id means "every dead record": "abc" or "²" used to mean all of
    them ("²" answered 500), and an id past bigint failed the query."""
    people(app)
    with app.app_context():
        db.session.add(OutboxRecord(topic="ledger", idempotency_key="k-odd", payload={}, status="dead", attempts=8,
                                    last_error="sink down"))
        db.session.commit()
    client = _admin(app)
    for raw in ("abc", "²", "٥", "99999999999999999999", "-1", "0"):
        page = client.post("/admin/outbox/retry", data={"record_id": raw}, follow_redirects=True)
        assert page.status_code == 200 and "No such outbox record; nothing was retried." in flashes(page), raw
    with app.app_context():
        assert db.session.query(OutboxRecord).one().status == "dead"


def test_retention_dry_run_then_run_and_backfill_runs(app):
    ids = people(app)
    sid, [fid] = in_review(app, ids["owner"])
    with app.app_context():
        from core.platform.models import EvidenceFile

        f = db.session.get(EvidenceFile, fid)
        old = (datetime.now(timezone.utc) - timedelta(days=800)).timestamp()
        root = app.extensions["points"].storage.root
        for key in (f.storage_key, f.thumbnail_key):  # retention goes by the objects' age in storage
            os.utime(os.path.join(root, key), (old, old))
        db.session.add(Run(kind="backfill", backfill_id="bf-2024-01", status="planned", counts={"awarded": 3}))
        db.session.commit()
    client = _admin(app)
    page = client.post("/admin/retention", data={"days": "730", "dry_run": "Dry run"}, follow_redirects=True)
    assert any(m.startswith("Dry run (nothing deleted) finished: 1 files that would be deleted") for m in flashes(page))
    with app.app_context():
        assert db.session.get(EvidenceFile, fid).deleted_at is None
    held = client.post("/admin/retention", data={"days": "730", "run": "Run now"})  # a confirmation step first
    assert held.status_code == 200 and "Run retention now?" in held.get_data(as_text=True)
    page = client.post("/admin/retention", data={"days": "730", "run": "Run now", "confirmed": "yes"},
                       follow_redirects=True)
    assert any(m.startswith("Retention run queued.") for m in flashes(page))
    with app.app_context():
        assert db.session.get(EvidenceFile, fid).deleted_at is None  # a job does it, not the request
    run_worker(app)
    with app.app_context():
        assert db.session.get(EvidenceFile, fid).deleted_at is not None
        run = db.session.scalars(db.select(Run).where(Run.kind == "retention", Run.status != "dry_run")).one()
        assert (run.status, run.started_by, run.counts["objects_deleted"]) == ("finished", "admin@example.com", 1)
    assert "Finished" in client.get("/admin/retention").get_data(as_text=True)  # the run is listed
    assert "bf-2024-01" in client.get("/admin/backfills").get_data(as_text=True)


def _progress_row(html: str, email: str) -> list[str]:
    row = next(r for r in html.split("<tr>") if f"<span class=\"muted\">{email}</span>" in r)
    return re.findall(r"<td>(\d+)</td>", row)


def test_progress_and_job_queue_pages(app, redis_conn):
    ids = people(app)
    client = _admin(app)
    assert _progress_row(client.get("/admin/progress").get_data(as_text=True), "reviewer@example.com") == ["0", "0"]
    with app.app_context():  # what a decision writes; the page counts these from the audit trail
        audit.record("submission.approved", "submission", 1, actor_id=ids["reviewer"])
        audit.record("submission.rejected", "submission", 2, actor_id=ids["reviewer"])
        audit.record("file.uploaded", "evidence_file", 3, actor_id=ids["reviewer"])  # not a decision
        db.session.commit()
    html = client.get("/admin/progress").get_data(as_text=True)
    assert _progress_row(html, "reviewer@example.com") == ["2", "2"]
    assert _progress_row(html, "admin@example.com") == ["0", "0"]
    # A job that fails for real, run by a real worker, shows up with its error.
    svc = app.extensions["points"]
    svc.queues.enqueue("maintenance", "jobs.does_not_exist.nothing")
    from tests.test_portal_support import run_worker

    run_worker(app)
    html = client.get("/admin/jobs").get_data(as_text=True)
    assert "maintenance" in html and "jobs.does_not_exist.nothing" in html


def test_a_tag_as_long_as_its_column_is_mapped_audited_and_removed(app):
    # Found by an outside test: a 200-character tag (the form's and the column's limit) was a 500,
    # because the audit event's subject id holds 64 characters; every long subject is the same kind.
    people(app)
    client = _admin(app)
    tag = "course-" + "x" * 193
    page = client.post("/admin/tags", data={"tag": tag, "activity_code": "LEARN"}, follow_redirects=True)
    assert page.status_code == 200 and f"Mapped tag {tag} to LEARN." in flashes(page)
    page = client.post("/admin/tags/remove", data={"tag": tag}, follow_redirects=True)
    assert "Removed the tag mapping." in flashes(page)
    with app.app_context():
        assert db.session.get(ActivityTag, tag) is None
        events = audit.trail("activity_tag", tag)
        assert [e.action for e in events] == ["tag.mapped", "tag.unmapped"]
        assert all(e.details["subject"] == tag for e in events)
    too_long = client.post("/admin/tags", data={"tag": tag + "y", "activity_code": "LEARN"}, follow_redirects=True)
    assert too_long.status_code == 200 and "200" in " ".join(flashes(too_long))
    with app.app_context():
        assert db.session.get(ActivityTag, tag + "y") is None
