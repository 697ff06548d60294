"""Corrections after "changes requested", through the portal: every field editable, files
removed and added, one resend; each change audited with its old and new value; the reviewer
sees what changed; points come from the corrected counters; a refused correction keeps what was
typed, puts each error next to its field and changes nothing."""
from __future__ import annotations

import io
import re
from datetime import timedelta

from sqlalchemy import select

from core.platform.db import db
from core.platform.models import AuditEvent, EvidenceFile, LedgerEntry, Submission
from tests.evidence_support import CLEAN_PDF, stored_keys, yesterday
from tests.test_portal_support import flashes, people, png, run_worker, sign_in, submit


def _amplify_sent_back(app, ids) -> tuple[int, list[int]]:
    sid, fids = submit(app, ids["owner"], [("attendance.png", png()), ("wrong.pdf", CLEAN_PDF)], "AMPLIFY",
                       counters={"peers": 3, "students": 10}, city="Lyon", note="First try")
    run_worker(app)
    reviewer = app.test_client()
    sign_in(reviewer, "reviewer")
    reviewer.post(f"/review/{sid}/decide", data={"changes": "1", "reason": "Peers should be 5; drop the PDF."})
    with app.app_context():
        assert db.session.get(Submission, sid).status == "changes_requested"
    return sid, fids


def _form(html: str, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', html) or \
        re.search(rf'<input[^>]*value="([^"]*)"[^>]*name="{name}"', html)
    return match.group(1) if match else ""


def test_correct_fields_remove_and_add_files_then_the_reviewer_sees_it_and_points_follow(app):
    ids = people(app)
    sid, (png_id, pdf_id) = _amplify_sent_back(app, ids)
    owner = app.test_client()
    sign_in(owner, "owner")
    page = owner.get(f"/submissions/{sid}").get_data(as_text=True)
    assert "Correct and resubmit" in page
    assert _form(page, "counter_peers") == "3" and _form(page, "city") == "Lyon"  # filled with what is stored

    new_day = yesterday() - timedelta(days=2)
    response = owner.post(f"/submissions/{sid}/resubmit", content_type="multipart/form-data", data={
        "session_date": new_day.isoformat(), "session_start": "", "city": "Lyon", "note": "Corrected count",
        "counter_peers": "5", "counter_students": "10", "remove": [str(pdf_id)],
        "files": [(io.BytesIO(png()), "attendance-list.png")]}, follow_redirects=True)
    assert response.status_code == 200
    assert any("Resubmitted with your corrections" in m for m in flashes(response))

    with app.app_context():
        s = db.session.get(Submission, sid)
        assert (s.status, s.revision, s.counters, s.session_date, s.note) == \
            ("scanning", 2, {"peers": 5, "students": 10}, new_day, "Corrected count")
        pdf = db.session.get(EvidenceFile, pdf_id)
        assert pdf.deleted_at is not None and pdf.storage_key not in stored_keys(app)
        [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "submission.corrected")).all()
        changes = {c["field"]: (c["old"], c["new"]) for c in event.details["changes"]}
        assert changes == {"session_date": (yesterday().isoformat(), new_day.isoformat()),
                           "note": ("First try", "Corrected count"), "counters.peers": ("3", "5")}
        assert event.details["files_removed"] == ["wrong.pdf"]
        assert event.details["files_added"] == ["attendance-list.png"]
        assert event.actor_id == ids["owner"]

    run_worker(app)  # the new file is scanned; the submission goes back to review
    reviewer = app.test_client()
    sign_in(reviewer, "reviewer")
    html = reviewer.get(f"/review/{sid}").get_data(as_text=True)
    assert "Changed in revision 2 (since revision 1)" in html
    assert re.search(r"Peers</th>\s*<td[^>]*><del>3</del></td>\s*<td[^>]*><ins>5</ins>", html)
    assert "Files removed: wrong.pdf" in html and "Files added: attendance-list.png" in html
    reviewer.post(f"/review/{sid}/decide", data={"approve": "1"})
    with app.app_context():
        entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.user_id == ids["owner"]))
        assert entry.delta_points == 2 * 5 + 10  # the corrected peers, not the first 3
        assert db.session.get(Submission, sid).status == "approved"


def test_a_refused_correction_keeps_what_was_typed_and_changes_nothing(app):
    ids = people(app)
    sid, (png_id, pdf_id) = _amplify_sent_back(app, ids)
    owner = app.test_client()
    sign_in(owner, "owner")
    future = yesterday() + timedelta(days=30)
    response = owner.post(f"/submissions/{sid}/resubmit", content_type="multipart/form-data", data={
        "session_date": future.isoformat(), "city": "Paris", "note": "typed note", "counter_peers": "7",
        "counter_students": "12", "remove": [str(png_id), str(pdf_id)]})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "The session date cannot be in the future." in html
    assert "Keep at least one file or add a new one." in html
    assert _form(html, "city") == "Paris" and _form(html, "counter_peers") == "7" and "typed note" in html
    with app.app_context():
        s = db.session.get(Submission, sid)
        assert (s.status, s.revision, s.counters["peers"], s.city) == ("changes_requested", 1, 3, "Lyon")
        assert all(f.deleted_at is None for f in s.files)


def test_a_correction_without_new_files_goes_straight_back_to_review(app):
    ids = people(app)
    sid, (png_id, pdf_id) = _amplify_sent_back(app, ids)
    owner = app.test_client()
    sign_in(owner, "owner")
    # Only the changed field is sent; the others keep their values.
    response = owner.post(f"/submissions/{sid}/resubmit", data={"counter_students": "40", "remove": [str(pdf_id)]})
    assert response.status_code == 302
    with app.app_context():
        s = db.session.get(Submission, sid)
        assert (s.status, s.counters, s.city) == ("in_review", {"peers": 3, "students": 40}, "Lyon")
    assert owner.post(f"/submissions/{sid}/resubmit", data={"counter_students": "41"}).status_code == 400  # in review now


def test_odd_file_ids_to_remove_are_refused_with_nothing_changed(app):
    """A "file" to remove that is not one of the submission's ("²", "٥", past bigint) is refused
    by the form (400, the page again), never a 500, and nothing is removed or resubmitted."""
    ids = people(app)
    sid, (png_id, pdf_id) = _amplify_sent_back(app, ids)
    owner = app.test_client()
    sign_in(owner, "owner")
    for odd in ("²", "٥", "99999999999999999999"):
        response = owner.post(f"/submissions/{sid}/resubmit", data={"counter_students": "40", "remove": [odd, str(pdf_id)]})
        assert response.status_code == 400, odd
    with app.app_context():
        s = db.session.get(Submission, sid)
        assert s.status == "changes_requested" and sorted(f.id for f in s.files if f.deleted_at is None) == sorted([png_id, pdf_id])
