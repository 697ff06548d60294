"""In Debian's headless Chromium: the uploader corrects a submission sent back for changes (edits
a counter, removes a file, resends) and the reviewer sees the difference; a submission's page and
the list update themselves while files are scanned; and the main pages at a phone's width (390 px)
have no sideways scrolling. Screenshots at desktop and phone width go to tests/artifacts/."""
from __future__ import annotations

import re

from core.platform.db import db
from core.platform.models import KajabiEvent, OutboxRecord, Submission
from core.review import reviewing
from tests.browser.test_review_flow import _flash, _shot, _sign_in, browser, pytestmark  # noqa: F401  (fixture, skip mark)
from tests.conftest import serve
from tests.evidence_support import CLEAN_PDF
from tests.test_portal_support import people, png, run_worker, submit
from tests.evidence_support import yesterday

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 1, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}


def _no_sideways_scroll(page) -> None:
    # Against the viewport the test set, not window.innerWidth: with is_mobile Chromium widens
    # the layout viewport to fit the content, so innerWidth grew with any overflow.
    phone = page.viewport_size["width"]
    width = page.evaluate("() => document.scrollingElement.scrollWidth")
    assert width <= phone, f"{page.url} is {width} px wide at {phone} px"


def _sent_back(app, ids) -> tuple[int, list[int]]:
    sid, fids = submit(app, ids["owner"], [("attendance.png", png()), ("wrong-list.pdf", CLEAN_PDF)], "AMPLIFY",
                       counters={"peers": 3, "students": 10}, city="Lyon", note="Workshop with the science team")
    run_worker(app)
    with app.app_context():
        reviewing.decide(sid, ids["reviewer"], "changes", "Peers should be 5; remove the PDF.")
        db.session.commit()
        assert db.session.get(Submission, sid).status == "changes_requested"
    return sid, fids


def test_correct_a_counter_remove_a_file_resend_and_the_reviewer_sees_it(make_app, browser):
    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True})
    ids = people(app)
    sid, (png_id, pdf_id) = _sent_back(app, ids)
    with serve(app) as base:
        for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            context = browser.new_context(**size)
            page = context.new_page()
            _sign_in(page, base, "owner@example.com")
            page.goto(f"{base}/submissions/{sid}")
            _shot(page, f"correction-form-{name}")
            _no_sideways_scroll(page)
            context.close()

        up = browser.new_context(**PHONE).new_page()
        _sign_in(up, base, "owner@example.com")
        up.goto(f"{base}/submissions/{sid}")
        assert up.get_by_label("Peers trained (0 to 50)").input_value() == "3"
        up.get_by_label("Peers trained (0 to 50)").fill("5")
        up.get_by_label("wrong-list.pdf").check()
        up.get_by_role("button", name="Resubmit for review").click()
        up.wait_for_load_state()
        assert "Resubmitted with your corrections" in _flash(up)
        assert "In review" in up.content() and "wrong-list.pdf" not in up.locator("main ul").first.inner_text()

        for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            context = browser.new_context(**size)
            rv = context.new_page()
            _sign_in(rv, base, "reviewer@example.com")
            rv.goto(f"{base}/review/{sid}")
            changes = rv.get_by_test_id("changes")
            text = changes.inner_text()
            assert "Changed in revision 2 (since revision 1)" in text
            assert re.search(r"Peers\s+(Before\s+)?3\s+(Now\s+)?5", text), text
            assert "Files removed: wrong-list.pdf" in text
            _shot(rv, f"correction-reviewer-{name}")
            _no_sideways_scroll(rv)
            context.close()
    with app.app_context():
        s = db.session.get(Submission, sid)
        assert (s.status, s.revision, s.counters["peers"]) == ("in_review", 2, 5)


def test_the_page_and_the_list_update_themselves_while_files_are_scanned(make_app, browser, tmp_path):
    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True})
    people(app)
    picture = tmp_path / "whiteboard.png"
    picture.write_bytes(png())
    with serve(app) as base:
        context = browser.new_context(**DESKTOP)
        up = context.new_page()
        _sign_in(up, base, "owner@example.com")
        up.goto(f"{base}/submissions/new")
        up.get_by_label("Activity").select_option("EXPLORE")
        up.get_by_label("Session date").fill(yesterday().isoformat())
        up.get_by_label("Evidence files").set_input_files(str(picture))
        up.get_by_role("button", name="Send for review").click()
        up.wait_for_load_state()
        sid = int(re.search(r"/submissions/(\d+)", up.url).group(1))
        assert "This page updates itself" in up.content()
        _shot(up, "live-status-scanning-desktop")
        phone = browser.new_context(**PHONE)
        listing = phone.new_page()
        _sign_in(listing, base, "owner@example.com")
        listing.goto(f"{base}/submissions")
        row = listing.locator("tr", has_text=f"#{sid}")
        assert "Being checked for viruses" in row.inner_text()
        _shot(listing, "live-status-list-scanning-phone")

        run_worker(app)  # the scan finishes; nobody reloads either page

        up.get_by_text("A reviewer will look at it soon.").wait_for(timeout=30_000)
        assert "whiteboard.png" in up.content() and "No virus found" in up.content()
        assert "This page updates itself" not in up.content()
        _shot(up, "live-status-done-desktop")
        row.get_by_text("whiteboard.png: No virus found").wait_for(timeout=30_000)
        assert "In review" in row.inner_text()
        _shot(listing, "live-status-list-done-phone")
        context.close()
        phone.close()


def test_main_pages_fit_a_phone(make_app, browser):
    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True})
    ids = people(app)
    # A name with no break in it: an outside test found it widened the reviewer's files table at 1280 px.
    long_name = "a-rather-long-file-name-for-the-attendance-list-2026-" + "x" * 90 + ".png"
    sid, _ = submit(app, ids["owner"], [(long_name, png())],
                    "AMPLIFY", counters={"peers": 4, "students": 30}, city="Saint-Étienne",
                    note="Workshop with the science department about prompts and their limits")
    submit(app, ids["other"], [("slides.pdf", CLEAN_PDF)], "EXPLORE")
    run_worker(app)
    with app.app_context():  # rows for the admin tables: a dead letter and an unmatched Kajabi event
        db.session.add(OutboxRecord(topic="ledger.recorded", idempotency_key="phone-dead", status="dead",
                                    payload={"user_id": ids["owner"], "note": "x" * 300}, last_error="HTTP 500 " * 40))
        db.session.add(KajabiEvent(event_id="evt-phone-" + "9" * 60, event_type="tag_added", payload={},
                                   contact_id="c-phone", email="someone.with.a.very.long.address@school.example.org",
                                   tag="elevate-ai-1-completed", state="queued_unmatched"))
        db.session.commit()
    with serve(app) as base:
        pages = (("owner@example.com", "/submissions", "phone-my-submissions"),
                 ("owner@example.com", "/submissions/new", "phone-new-submission"),
                 ("owner@example.com", f"/submissions/{sid}", "phone-submission"),
                 ("reviewer@example.com", "/review", "phone-review-queue"),
                 ("reviewer@example.com", f"/review/{sid}", "phone-review-submission"),
                 ("admin@example.com", "/admin/users", "phone-admin-users"),
                 ("admin@example.com", "/admin/retention", "phone-admin-retention"),
                 ("admin@example.com", "/admin", "phone-admin"),
                 ("admin@example.com", "/admin/catalogue", "phone-admin-catalogue"),
                 ("admin@example.com", "/admin/kajabi", "phone-admin-kajabi"),
                 ("admin@example.com", "/admin/outbox", "phone-admin-outbox"),
                 ("admin@example.com", "/admin/backfills", "phone-admin-backfills"),
                 ("admin@example.com", "/admin/progress", "phone-admin-progress"),
                 ("admin@example.com", "/admin/jobs", "phone-admin-jobs"),
                 ("admin@example.com", "/account", "phone-account"))
        contexts = {}
        for email, path, name in pages:
            if email not in contexts:
                contexts[email] = browser.new_context(**PHONE).new_page()
                _sign_in(contexts[email], base, email)
            page = contexts[email]
            page.goto(base + path)
            assert page.locator("h1").count() == 1
            _no_sideways_scroll(page)
            _shot(page, name)
        desk = browser.new_context(**DESKTOP).new_page()
        _sign_in(desk, base, "reviewer@example.com")
        desk.goto(f"{base}/review/{sid}")
        _no_sideways_scroll(desk)
        _shot(desk, "desktop-review-submission-long-name")
        # Stacked rows keep their labels: the list's cells say what they are.
        cell = contexts["owner@example.com"]
        cell.goto(f"{base}/submissions")
        label = cell.evaluate("() => getComputedStyle(document.querySelector('td[data-label=Status]'), '::before').content")
        assert label == '"Status"'
