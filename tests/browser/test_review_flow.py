"""The whole review flow in Debian's headless Chromium (never a downloaded browser): an uploader
submits a PNG without JavaScript, a real RQ worker scans it, a reviewer claims, opens, downloads
(an attachment, not an inline render) and approves it, a second reviewer cannot decide the
claimed item, and the points appear on the uploader's page. Screenshots go to tests/artifacts/."""
from __future__ import annotations

import os
import re

import pytest

from core.platform.db import db
from core.platform.models import Submission
from tests.conftest import serve
from tests.test_portal_support import PASSWORD, people, png, run_worker
from tests.evidence_support import yesterday

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "artifacts")

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def _sign_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()[:500]


def _shot(page, name: str) -> None:
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"), full_page=True)


def _flash(page) -> str:
    return " ".join(page.locator(".flash").all_inner_texts())


def test_upload_scan_claim_download_approve(make_app, browser, tmp_path):
    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True})  # as in production
    ids = people(app)
    picture = tmp_path / "whiteboard.png"
    picture.write_bytes(png())

    with serve(app) as base:
        # The uploader, with JavaScript off: the form works without it.
        uploader = browser.new_context(java_script_enabled=False, accept_downloads=True)
        up = uploader.new_page()
        _sign_in(up, base, "owner@example.com")
        up.goto(f"{base}/submissions/new")
        up.get_by_label("Activity").select_option("EXPLORE")
        up.get_by_label("Session date").fill(yesterday().isoformat())
        up.get_by_label("Note for the reviewer (optional)").fill("Lesson on prompts")
        up.get_by_label("Evidence files").set_input_files(str(picture))
        up.get_by_role("button", name="Send for review").click()
        up.wait_for_load_state()
        assert "sent" in _flash(up)
        submission_id = int(re.search(r"/submissions/(\d+)", up.url).group(1))
        assert "Checking files for viruses" in up.content()

        run_worker(app)  # a real RQ worker: scan, then thumbnail
        up.goto(f"{base}/submissions")
        row = up.locator("tr", has_text=f"#{submission_id}")
        assert "In review" in row.inner_text() and "No virus found" in row.inner_text()

        # The reviewer claims it, opens it, downloads the file.
        reviewer = browser.new_context(accept_downloads=True)
        rv = reviewer.new_page()
        _sign_in(rv, base, "reviewer@example.com")
        assert rv.url.endswith("/review")
        _shot(rv, "queue")
        rv.get_by_role("link", name=f"#{submission_id}").click()
        rv.get_by_role("button", name="Claim for 30 minutes").click()
        rv.wait_for_load_state()
        assert "You are reviewing submission" in _flash(rv)
        assert "Claimed by you" in rv.get_by_test_id("holder").inner_text()
        thumb = rv.locator("img.thumb")
        assert thumb.count() == 1 and rv.evaluate("img => img.naturalWidth", thumb.element_handle()) > 0

        disposition = {}
        rv.on("response", lambda r: disposition.setdefault(r.url, r.headers.get("content-disposition")))
        page_url = rv.url
        with rv.expect_download() as info:
            rv.get_by_role("link", name=re.compile(r"^Download ")).click()
        download = info.value
        assert download.suggested_filename == "whiteboard.png"
        assert open(download.path(), "rb").read() == picture.read_bytes()
        assert any(v and v.startswith("attachment") for u, v in disposition.items() if "/api/files/" in u)
        assert rv.url == page_url  # the browser stayed on the page: nothing was rendered inline
        _shot(rv, "detail")

        # A second reviewer sees who holds it and cannot decide it.
        other = browser.new_context()
        r2 = other.new_page()
        _sign_in(r2, base, "reviewer2@example.com")
        r2.goto(f"{base}/review/{submission_id}")
        assert "Claimed by" in r2.get_by_test_id("holder").inner_text()
        r2.get_by_role("button", name="Approve").click()
        r2.wait_for_load_state()
        assert "is reviewing submission" in _flash(r2) and "nothing was changed" in _flash(r2)
        with app.app_context():
            s = db.session.get(Submission, submission_id)
            assert (s.status, s.claimed_by_id) == ("in_review", ids["reviewer"])

        # The holder approves it; the points appear on the uploader's page.
        rv.get_by_role("button", name="Approve").click()
        rv.wait_for_load_state()
        assert "Approved: +50 points." in _flash(rv)
        up.goto(f"{base}/submissions")
        assert up.get_by_test_id("points-total").inner_text() == "50"
        assert "In-class innovator" in up.content()
        _shot(up, "uploader")

        # Admin pages, and the keyboard: the first Tab lands on the skip link, visibly.
        admin = browser.new_context()
        ad = admin.new_page()
        _sign_in(ad, base, "admin@example.com")
        for path, name in (("/admin", "admin"), ("/admin/users", "admin-users"), ("/admin/catalogue", "admin-catalogue")):
            ad.goto(base + path)
            assert ad.locator("h1").count() == 1
            _shot(ad, name)
        ad.keyboard.press("Tab")
        focused = ad.evaluate("() => [document.activeElement.className, getComputedStyle(document.activeElement).outlineStyle]")
        assert focused == ["skip-link", "solid"]
        for context in (uploader, reviewer, other, admin):
            context.close()
