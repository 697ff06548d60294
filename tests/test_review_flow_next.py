"""Deciding and moving on: "Approve/Reject/Request changes and next" land on the next item of the
queue the reviewer came from (same filters and order), claimed for them; the detail page says
what approving is worth, by the ledger's own rules; uploaders see what each submission earned and
why it earned 0; the queue shows file counts and types and only the controls that act."""
from __future__ import annotations

import re
from datetime import date
from urllib.parse import urlencode

from core.platform.db import db
from core.platform.models import LedgerEntry, Submission
from core.points.worth import approval_worth
from tests.test_portal_support import add_file, flashes, in_review, insert, people, sign_in


def _row(app, sid: int) -> Submission:
    with app.app_context():
        s = db.session.get(Submission, sid)
        db.session.expunge(s)
        return s


def test_approve_and_next_lands_on_the_next_item_of_the_same_queue_claimed(app):
    ids = people(app)
    # Oldest first: a PRESENT, an EXPLORE, another PRESENT, one held by reviewer2, one of another uploader.
    present1, explore, present2, held, other = insert(app, ids["owner"], 5)
    with app.app_context():
        for sid, code in ((present1, "PRESENT"), (present2, "PRESENT"), (held, "PRESENT")):
            db.session.get(Submission, sid).activity_code = code
        db.session.get(Submission, other).user_id = ids["other"]
        db.session.commit()
    colleague = app.test_client()
    sign_in(colleague, "reviewer2")
    colleague.post(f"/review/{held}/claim")

    client = app.test_client()
    sign_in(client, "reviewer")
    qs = urlencode({"status": "in_review", "activity": "PRESENT", "sort": "oldest"})
    queue = client.get(f"/review?{qs}").get_data(as_text=True)
    assert f'/review/{present1}?q=' in queue  # rows carry the queue they belong to
    page = client.get(f"/review/{present1}?q={urlencode({'q': qs})[2:]}")
    html = page.get_data(as_text=True)
    assert f'name="queue" type="hidden" value="{qs.replace("&", "&amp;")}"' in html
    assert f'href="/review/{present2}?q=' in html and 'rel="next"' in html  # j: the next PRESENT, not the EXPLORE

    done = client.post(f"/review/{present1}/decide", data={"approve": "Approve and next", "queue": qs})
    assert done.status_code == 302 and f"/review/{present2}?q=" in done.headers["Location"]
    assert _row(app, present1).status == "approved"
    s = _row(app, present2)
    assert (s.claimed_by_id, s.status) == (ids["reviewer"], "in_review")  # claimed for the reviewer
    followed = client.get(done.headers["Location"])
    assert f"Next: submission {present2}, yours until" in " ".join(flashes(followed))

    # The last PRESENT the reviewer can take: the held one is skipped; back to the same queue.
    done = client.post(f"/review/{present2}/decide", data={"reject": "Reject and next", "reason": "Blurry", "queue": qs})
    assert done.headers["Location"].endswith(f"/review?{qs}")
    assert _row(app, held).claimed_by_id == ids["reviewer2"] and _row(app, explore).claimed_by_id is None


def test_a_missing_reason_is_shown_at_the_field_and_the_queue_is_kept(app):
    ids = people(app)
    sid, _ = in_review(app, ids["owner"], "PRESENT")
    client = app.test_client()
    sign_in(client, "reviewer")
    qs = urlencode({"status": "in_review", "sort": "newest"})
    page = client.post(f"/review/{sid}/decide", data={"changes": "Request changes and next", "reason": " ", "queue": qs})
    html = page.get_data(as_text=True)
    assert page.status_code == 400
    assert re.search(r'<p class="error" id="reason-error">Say what to change', html)
    assert f'value="{qs.replace("&", "&amp;")}"' in html  # "and next" still knows the queue
    assert _row(app, sid).status == "in_review"


def test_the_detail_page_says_what_approving_adds_by_the_ledgers_rules(app):
    ids = people(app)
    first, second = insert(app, ids["owner"], 2)
    client = app.test_client()
    sign_in(client, "reviewer")
    html = client.get(f"/review/{first}").get_data(as_text=True)
    assert "Approving adds +50 points; EXPLORE pays once; badge In-class innovator would be earned." in html
    client.post(f"/review/{first}/decide", data={"approve": "Approve and next"})
    html = client.get(f"/review/{second}").get_data(as_text=True)
    assert "Approving adds +0 points (Explore pays once)." in html
    client.post(f"/review/{second}/decide", data={"approve": "Approve and next"})
    with app.app_context():  # the preview agreed with what the ledger wrote
        rows = db.session.query(LedgerEntry.delta_points, LedgerEntry.code).order_by(LedgerEntry.id).all()
    assert rows == [(50, "awarded"), (0, "cap_reached")]

    owner = app.test_client()
    sign_in(owner, "owner")
    mine = owner.get("/submissions").get_data(as_text=True)
    assert re.search(rf'data-testid="earned-{first}">\+50<', mine)
    assert re.search(rf'data-testid="earned-{second}">\+0 \(Explore pays once\)<', mine)
    assert "Points earned: +0 (Explore pays once)" in owner.get(f"/submissions/{second}").get_data(as_text=True)


def test_worth_of_a_capped_counter_activity(app):
    ids = people(app)
    (sid,) = insert(app, ids["owner"], 1, activity="AMPLIFY", session_date=date(2024, 3, 4),
                    counters={"peers": 30, "students": 10})
    with app.app_context():
        worth = approval_worth(db.session.get(Submission, sid))
    assert (worth.points, worth.code) == (70, "awarded")
    assert "peers: 50 of 50 left in any 7 days of sessions" in worth.caps and worth.badges == []


def test_queue_rows_show_files_and_only_controls_that_act(app):
    ids = people(app)
    open_id, decided = insert(app, ids["owner"], 2)
    add_file(app, open_id, sha256="aa" * 32)
    with app.app_context():
        db.session.get(Submission, decided).status = "approved"
        db.session.commit()
    client = app.test_client()
    sign_in(client, "reviewer")
    open_tab = client.get("/review").get_data(as_text=True)
    assert re.search(rf'data-testid="files-{open_id}">1 file<br><span class="muted">PNG</span>', open_tab)
    assert 'name="submission_ids"' in open_tab and "Claimed by</th>" in open_tab
    approved_tab = client.get("/review?status=approved").get_data(as_text=True)
    assert f"#{decided}" in approved_tab
    assert 'name="submission_ids"' not in approved_tab and "data-select-all" not in approved_tab
    assert "Claimed by</th>" not in approved_tab and "nobody" not in approved_tab


def test_a_queue_carried_in_a_link_or_form_with_a_control_character_is_dropped_not_a_500(app):
    """The queue's filters ride inside `q`, `queue` and `back`, decoded once more past the
    request's control-character check: a NUL there reached PostgreSQL (500), and lost the
    reviewer's decision. Such pairs are dropped; the page and the decision go on."""
    ids = people(app)
    sid, other = insert(app, ids["owner"], 2)
    reviewer = app.test_client()
    sign_in(reviewer, "reviewer")
    for q in ("uploader%3Da%2500b", "activity%3D%2500", "uploader%3D%25C2%2585x%26status%3Din_review"):
        page = reviewer.get(f"/review/{sid}?q={q}")
        assert page.status_code == 200
        assert "%00" not in page.get_data(as_text=True)
    assert reviewer.post(f"/review/{sid}/claim").status_code in (302, 303)
    decided = reviewer.post(f"/review/{sid}/decide", data={"approve": "1", "queue": "uploader=a%00b"})
    assert decided.status_code in (302, 303)
    assert _row(app, sid).status == "approved"
    refused = reviewer.post("/review/bulk", data={"reject": "1", "reason": "", "submission_ids": [str(other)],
                                                  "back": "/review?uploader=%00&status=in_review"})
    assert refused.status_code == 400 and "Give a reason" in refused.get_data(as_text=True)
    assert _row(app, other).status == "in_review"


def test_a_back_link_with_cr_or_lf_returns_to_the_queue_after_a_bulk_decision(app):
    """`back` goes into the redirect's Location header: a CR or LF there was a 500 after the
    decision was committed (found by the outside test). Such a link, or one not ours, is replaced
    by the queue; the decision stands."""
    ids = people(app)
    first, second = insert(app, ids["owner"], 2)
    reviewer = app.test_client()
    sign_in(reviewer, "reviewer")
    for sid, back in ((first, "/review\n"), (second, "/review?x=1\r\nSet-Cookie: x=1")):
        done = reviewer.post("/review/bulk", data={"approve": "1", "submission_ids": [str(sid)], "back": back})
        assert done.status_code == 302 and done.headers["Location"].endswith("/review")
        assert _row(app, sid).status == "approved"
