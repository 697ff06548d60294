"""The reviewer's side: claims and their lease, decisions through the approval hook, conflicts
that change nothing, bulk decisions, revocation, the detail page and its hints."""
from __future__ import annotations

import re

from datetime import date, datetime, timedelta, timezone

from core.review import reviewing as review
from core.platform.db import db, utcnow
from core.platform.models import AuditEvent, LedgerEntry, Submission
from tests.evidence_support import png, run_worker, submit
from tests.test_portal_support import add_file, flashes, in_review, insert, people, sign_in


def _row(app, submission_id):
    with app.app_context():
        s = db.session.get(Submission, submission_id)
        db.session.expunge(s)
        return s


def test_claim_shows_holder_and_blocks_a_second_reviewer(app):
    ids = people(app)
    [sid] = insert(app, ids["owner"])
    first, second = app.test_client(), app.test_client()
    sign_in(first, "reviewer")
    sign_in(second, "reviewer2")

    page = first.post(f"/review/{sid}/claim", follow_redirects=True)
    assert any("You are reviewing submission" in m for m in flashes(page))
    s = _row(app, sid)
    assert s.claimed_by_id == ids["reviewer"]
    assert timedelta(minutes=29) < s.claim_expires_at - utcnow() <= timedelta(minutes=30)

    # The other reviewer sees who holds it, in the queue and on the page.
    assert "reviewer until" in second.get("/review").get_data(as_text=True)
    assert "Claimed by reviewer" in second.get(f"/review/{sid}").get_data(as_text=True)

    # ...and can neither claim nor decide it; nothing changes.
    refused = second.post(f"/review/{sid}/claim", follow_redirects=True)
    assert any("is reviewing submission" in m and "nothing was changed" in m for m in flashes(refused))
    refused = second.post(f"/review/{sid}/decide", data={"approve": "Approve"}, follow_redirects=True)
    assert any("is reviewing submission" in m for m in flashes(refused))
    after = _row(app, sid)
    assert (after.status, after.claimed_by_id, after.claim_expires_at) == ("in_review", ids["reviewer"], s.claim_expires_at)
    with app.app_context():
        assert db.session.query(LedgerEntry).count() == 0


def test_an_expired_lease_can_be_taken_over(app):
    ids = people(app)
    [sid] = insert(app, ids["owner"])
    with app.app_context():
        review.claim(sid, ids["reviewer"], now=utcnow() - timedelta(minutes=31))
        db.session.commit()
        assert review.holder(db.session.get(Submission, sid)) is None
        taken = review.claim(sid, ids["reviewer2"])
        db.session.commit()
        assert taken.claimed_by_id == ids["reviewer2"]


def test_approve_goes_through_the_ledger_and_says_how_many_points(app):
    ids = people(app)
    sid, _ = in_review(app, ids["owner"], "EXPLORE")
    client = app.test_client()
    sign_in(client, "reviewer")
    client.post(f"/review/{sid}/claim")
    page = client.post(f"/review/{sid}/decide", data={"approve": "Approve"}, follow_redirects=True)
    assert "Approved: +50 points. Badges: In-class innovator." in flashes(page)  # the badge's name, not its code
    s = _row(app, sid)
    assert (s.status, s.decided_by_id, s.claimed_by_id) == ("approved", ids["reviewer"], None)

    # A second EXPLORE is capped: approved, 0 points, and the message says so.
    sid2, _ = in_review(app, ids["owner"], "EXPLORE")
    page = client.post(f"/review/{sid2}/decide", data={"approve": "Approve"}, follow_redirects=True)
    assert "Approved, but the cap was reached: 0 points." in flashes(page)

    # Deciding an already decided item fails clearly and changes nothing.
    page = client.post(f"/review/{sid}/decide", data={"reject": "Reject", "reason": "late"}, follow_redirects=True)
    assert any("already approved" in m and "nothing was changed" in m for m in flashes(page))
    assert _row(app, sid).status == "approved"

    # The uploader's page shows the points.
    owner = app.test_client()
    sign_in(owner, "owner")
    assert 'data-testid="points-total">50<' in owner.get("/submissions").get_data(as_text=True)


def test_reject_needs_a_reason_and_request_changes_keeps_history(app):
    ids = people(app)
    sid, _ = in_review(app, ids["owner"], "PRESENT")
    client = app.test_client()
    sign_in(client, "reviewer")
    page = client.post(f"/review/{sid}/decide", data={"reject": "Reject", "reason": "  "}, follow_redirects=True)
    assert page.status_code == 400  # the page again, with the error at the reason field
    assert re.search(r'<p class="error" id="reason-error">Give a reason for rejecting', page.get_data(as_text=True))
    assert 'aria-invalid="true"' in page.get_data(as_text=True)
    assert _row(app, sid).status == "in_review"

    page = client.post(f"/review/{sid}/decide", data={"changes": "Request changes", "reason": "Add the slides"},
                       follow_redirects=True)
    assert any("Asked for changes" in m for m in flashes(page))
    s = _row(app, sid)
    assert (s.status, s.reason) == ("changes_requested", "Add the slides")

    owner = app.test_client()
    sign_in(owner, "owner")
    html = owner.get(f"/submissions/{sid}").get_data(as_text=True)
    assert "Changes requested" in html and "Add the slides" in html and "Resubmit" in html
    from tests.test_portal_support import png, run_worker

    resp = owner.post(f"/submissions/{sid}/resubmit", data={"files": [(__import__("io").BytesIO(png()), "slides.png")]},
                      content_type="multipart/form-data", follow_redirects=True)
    assert any("Resubmitted" in m for m in flashes(resp))
    run_worker(app)
    s = _row(app, sid)
    assert (s.status, s.revision) == ("in_review", 2)
    with app.app_context():
        actions = [e.action for e in db.session.query(AuditEvent).filter_by(subject_type="submission",
                                                                            subject_id=str(sid))]
    assert actions.index("submission.changes_requested") < actions.index("submission.files_added")
    html = client.get(f"/review/{sid}").get_data(as_text=True)
    assert "submission.changes_requested" in html and "Add the slides" in html  # the trail keeps it


def test_nobody_decides_their_own_submission(app):
    ids = people(app)
    own, _ = in_review(app, ids["reviewer"], "EXPLORE")  # reviewers may upload evidence too
    client = app.test_client()
    sign_in(client, "reviewer")
    queue = client.get("/review").get_data(as_text=True)
    assert f'data-testid="own-{own}"' in queue and f'id="pick-{own}"' not in queue  # not bulk-selectable
    page = client.get(f"/review/{own}").get_data(as_text=True)
    assert "your own submission, so another reviewer has to decide it" in page
    assert "Claim for 30 minutes" not in page and 'name="approve"' not in page  # no controls that would fail
    for data in ({"approve": "Approve"}, {"reject": "Reject", "reason": "no"}):
        page = client.post(f"/review/{own}/decide", data=data, follow_redirects=True)
        assert any("your own submission" in m for m in flashes(page)), flashes(page)
    page = client.post(f"/review/{own}/claim", follow_redirects=True)
    assert any("your own submission" in m for m in flashes(page))
    page = client.post("/review/bulk", data={"submission_ids": [str(own)], "approve": "1"}, follow_redirects=True)
    assert any(m.startswith(f"Submission {own} was not changed") and "your own" in m for m in flashes(page))
    s = _row(app, own)
    assert (s.status, s.claimed_by_id, s.decided_by_id) == ("in_review", None, None)
    with app.app_context():
        assert db.session.query(LedgerEntry).count() == 0  # no points to oneself
    # Another reviewer decides it as usual.
    colleague = app.test_client()
    sign_in(colleague, "reviewer2")
    page = colleague.get(f"/review/{own}").get_data(as_text=True)
    assert "Claim for 30 minutes" in page and 'name="approve"' in page and "your own submission" not in page
    page = colleague.post(f"/review/{own}/decide", data={"approve": "Approve"}, follow_redirects=True)
    assert any(m.startswith("Approved: +50 points") for m in flashes(page))


def test_bulk_decisions_report_each_conflict_and_do_the_rest(app):
    ids = people(app)
    sids = insert(app, ids["owner"], 3, activity="PRESENT")
    other = insert(app, ids["other"], 1, activity="PRESENT")
    with app.app_context():
        review.claim(sids[0], ids["reviewer2"])
        db.session.commit()
    client = app.test_client()
    sign_in(client, "reviewer")
    page = client.post("/review/bulk", data={"submission_ids": [str(i) for i in sids + other], "approve": "1"},
                       follow_redirects=True)
    messages = flashes(page)
    assert "Approved 3 submission(s), +40 points in total." in messages  # 20 + 0 (once) + 20
    assert any(m.startswith(f"Submission {sids[0]} was not changed") for m in messages)
    assert _row(app, sids[0]).status == "in_review"

    too_many = insert(app, ids["owner"], 51)
    page = client.post("/review/bulk", data={"submission_ids": [str(i) for i in too_many], "reject": "1",
                                             "reason": "dup"}, follow_redirects=True)
    assert any("at most 50" in m for m in flashes(page))
    assert _row(app, too_many[0]).status == "in_review"
    page = client.post("/review/bulk", data={"submission_ids": [str(i) for i in too_many[-2:]], "reject": "1",
                                             "back": "/review?sort=newest"})
    html = page.get_data(as_text=True)  # the queue again, with the error at the reason field
    assert page.status_code == 400 and '<p class="error" id="reason-error">Give a reason for rejecting' in html
    assert f'value="{too_many[-1]}" id="pick-{too_many[-1]}" aria-label="Select submission {too_many[-1]}" checked' in html
    assert 'name="back" value="/review?sort=newest"' in html and not flashes(page)
    held = client.post("/review/bulk", data={"submission_ids": [str(i) for i in too_many[:2]], "reject": "1",
                                             "reason": "Duplicate"})  # a confirmation step first (portal/confirm.py)
    assert held.status_code == 200 and "Reject 2 submission(s)?" in held.get_data(as_text=True)
    assert _row(app, too_many[0]).status == "in_review"
    page = client.post("/review/bulk", data={"submission_ids": [str(i) for i in too_many[:2]], "reject": "1",
                                             "reason": "Duplicate", "confirmed": "yes"}, follow_redirects=True)
    assert "Rejected 2 submission(s)." in flashes(page)


def test_revoke_is_admin_only_and_writes_a_compensating_row(app):
    ids = people(app)
    sid, _ = in_review(app, ids["owner"], "EXPLORE")
    reviewer, admin = app.test_client(), app.test_client()
    sign_in(reviewer, "reviewer")
    sign_in(admin, "admin")
    reviewer.post(f"/review/{sid}/decide", data={"approve": "Approve"})
    assert reviewer.post(f"/review/{sid}/revoke", data={"reason": "fraud"}).status_code == 403
    held = admin.post(f"/review/{sid}/revoke", data={"reason": "Copied evidence"})  # confirmation step first
    assert held.status_code == 200 and "Revoke this approval?" in held.get_data(as_text=True)
    assert _row(app, sid).status == "approved"
    page = admin.post(f"/review/{sid}/revoke", data={"reason": "Copied evidence", "confirmed": "yes"},
                      follow_redirects=True)
    assert "Revoked: -50 points written back to the ledger." in flashes(page)
    with app.app_context():
        rows = db.session.query(LedgerEntry).order_by(LedgerEntry.id).all()
        assert [(r.delta_points, r.code) for r in rows] == [(50, "awarded"), (-50, "revoked")]
        assert rows[1].reverses_id == rows[0].id
    assert _row(app, sid).status == "revoked"


def test_detail_page_files_earlier_submissions_hints_and_trail(app):
    ids = people(app)
    earlier = insert(app, ids["owner"], 1, activity="AMPLIFY", status="approved", city="Leeds",
                     session_start=datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc), session_date=date(2024, 3, 1))
    sid, [fid] = in_review(app, ids["owner"], "AMPLIFY", city="Leeds", session_date=date.today() - timedelta(days=1),
                           counters={"peers": 45, "students": 10})
    with app.app_context():  # move it next to the approved session so the +-45 minute hint applies
        s = db.session.get(Submission, sid)
        s.session_date, s.session_start = date(2024, 3, 1), datetime(2024, 3, 1, 10, 30, tzinfo=timezone.utc)
        db.session.commit()
        sha = s.files[0].sha256
    add_file(app, earlier[0], sha256=sha)
    client = app.test_client()
    sign_in(client, "reviewer")
    html = client.get(f"/review/{sid}").get_data(as_text=True)
    assert sha in html and "No virus found" in html
    assert f'href="/api/files/{fid}"' in html and f'src="/api/files/{fid}/thumbnail"' in html
    assert f"#{earlier[0]}" in html  # earlier submission for the same activity
    assert "within 45 minutes" in html
    assert "Peers trained: 45 is unusually large" in html
    assert re.search(rf'data-testid="exact-{fid}">The same file \(identical SHA-256\) was also uploaded with\s*'
                     rf'<a href="/review/{earlier[0]}">submission {earlier[0]}</a> \(Approved\)', html)
    assert "submission.created" in html and "file.uploaded" not in html
    thumb = client.get(f"/api/files/{fid}/thumbnail")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    download = client.get(f"/api/files/{fid}")
    assert download.headers["Content-Disposition"].startswith("attachment")


def test_a_csv_download_comes_with_advice_on_opening_it_safely(app):
    # Evidence is kept byte for byte, so a CSV cell such as =HYPERLINK(...) cannot be defused;
    # the reviewer who opens it is told how to open it without running it.
    ids = people(app)
    sid, (csv_id, png_id) = submit(app, ids["owner"], [("attendance.csv", b"name,peers\n=HYPERLINK(\"x\"),3\n"),
                                                       ("photo.png", png())])
    run_worker(app)
    client = app.test_client()
    sign_in(client, "reviewer")
    html = client.get(f"/review/{sid}").get_data(as_text=True)
    assert f'data-testid="csv-hint-{csv_id}"' in html and "import it as text" in html
    assert f'data-testid="csv-hint-{png_id}"' not in html


def test_progress_counts_decisions_today_and_this_week(app):
    ids = people(app)
    sids = insert(app, ids["owner"], 3, activity="PRESENT")
    with app.app_context():
        for sid in sids[:2]:
            review.decide(sid, ids["reviewer"], "reject", "no")
        db.session.commit()
        db.session.query(AuditEvent).filter_by(subject_id=str(sids[1]), action="submission.rejected").update(
            {"created_at": utcnow() - timedelta(days=1)})
        db.session.commit()
        now = utcnow()
        rows = {r["email"]: r for r in review.progress(now)}
    expected_week = 2 if now.weekday() > 0 else 1  # yesterday is last week on a Monday
    assert (rows["reviewer@example.com"]["today"], rows["reviewer@example.com"]["week"]) == (1, expected_week)
    assert rows["reviewer2@example.com"]["week"] == 0


ODD_IDS = ["²", "٥", "１", "99999999999999999999", "9223372036854775808", "-1", "0", " 1", "1e3", "0x1", ""]


def test_odd_ids_in_the_bulk_form_are_skipped_and_the_rest_decided(app):
    """"²".isdigit() is True and int("²") raises: the bulk form answered 500 and lost the
    reviewer's decision; an id past bigint made the query fail. Odd ids are now skipped."""
    ids = people(app)
    good = insert(app, ids["owner"], 1, activity="PRESENT")[0]
    client = app.test_client()
    sign_in(client, "reviewer")
    page = client.post("/review/bulk", data={"submission_ids": ODD_IDS + [str(good)], "approve": "1"},
                       follow_redirects=True)
    assert page.status_code == 200 and "Approved 1 submission(s), +20 points in total." in flashes(page)
    assert _row(app, good).status == "approved"
    held = client.post("/review/bulk", data={"submission_ids": ODD_IDS, "reject": "1", "reason": "Duplicate"},
                       follow_redirects=True)
    assert held.status_code == 200
