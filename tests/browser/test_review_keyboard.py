"""A reviewer's morning in Debian's headless Chromium, keyboard only: j and o open the oldest item
of the queue, a approves and lands on the next item (claimed), r + Ctrl+Enter rejects with a
reason and moves on, ? shows the shortcuts; on the way the reviewer reads a PDF's first page and a
CSV's rows as previews the server made. The same decision works with JavaScript off. Screenshots go
to tests/artifacts/ (copies of them are in docs/screenshots/)."""
from __future__ import annotations

import os
import re

from core.platform.db import db
from core.platform.models import Submission
from tests import pdf_samples
from tests.browser.test_review_flow import _flash, _shot, _sign_in, browser, pytestmark  # noqa: F401
from tests.conftest import serve
from tests.evidence_support import image_bytes, run_worker, submit
from tests.test_portal_support import people

CSV = b"name,peers,students\nAda,3,20\nGrace,5,31\n=HYPERLINK(\"http://example.com\"),1,1\n"


def at(page, base: str, submission_id: int) -> bool:
    return re.fullmatch(rf"{re.escape(base)}/review/{submission_id}(\?q=.*)?", page.url) is not None


def _press(page, key: str) -> None:
    with page.expect_navigation():
        page.keyboard.press(key)


def test_five_submissions_with_the_keyboard_only(make_app, browser):  # noqa: F811
    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True})
    ids = people(app)
    files = [("whiteboard.png", image_bytes("PNG", (320, 240), (20, 120, 200))),
             ("certificate.pdf", pdf_samples.pages(3)),
             ("attendance.csv", CSV),
             ("slides.png", image_bytes("PNG", (320, 240), (200, 60, 20))),
             ("room.jpg", image_bytes("JPEG", (320, 240), (30, 160, 40))),
             ("late.png", image_bytes("PNG", (320, 240), (90, 90, 90)))]
    order = [submit(app, ids["owner"], [f], "EXPLORE" if i == 0 else "PRESENT")[0] for i, f in enumerate(files)]
    run_worker(app)  # scans, thumbnails and previews

    with serve(app) as base:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        _sign_in(page, base, "reviewer@example.com")
        page.keyboard.press("j")
        assert page.locator("tr.selected a[data-open]").inner_text() == f"#{order[0]}"
        _shot(page, "keyboard-queue")
        _press(page, "o")
        assert at(page, base, order[0])
        assert "Approving adds +50 points" in page.get_by_test_id("worth").inner_text()

        page.keyboard.press("?")
        assert page.locator("#shortcuts").is_visible()
        _shot(page, "keyboard-help")
        page.keyboard.press("?")
        assert not page.locator("#shortcuts").is_visible()

        _press(page, "a")  # 1: approve the PNG, on to the PDF
        assert "Approved: +50 points. Badges: In-class innovator." in _flash(page)
        assert at(page, base, order[1])
        assert "Claimed by you" in page.get_by_test_id("holder").inner_text()
        first_page = page.get_by_role("img", name="Page 1 of certificate.pdf")
        first_page.scroll_into_view_if_needed()
        assert page.evaluate("img => img.complete && img.naturalWidth", first_page.element_handle()) > 900
        assert page.locator("img.page").count() == 3
        _shot(page, "keyboard-pdf-preview")

        _press(page, "a")  # 2: approve the PDF, on to the CSV
        assert at(page, base, order[2])
        table = page.locator("table.csv")
        assert table.locator("tr").count() == 4 and "Grace" in table.inner_text()
        formula = table.locator("td.formula")
        assert formula.count() == 1 and formula.inner_text().startswith("=HYPERLINK")
        _shot(page, "keyboard-csv-preview")

        page.keyboard.press("r")  # 3: reject the CSV with a reason, typed where r put the cursor
        page.keyboard.type("Names only, no dates: add the session dates.")
        with page.expect_navigation():
            page.keyboard.press("Control+Enter")
        assert "Rejected submission" in _flash(page)
        assert at(page, base, order[3])

        _press(page, "a")  # 4
        assert at(page, base, order[4])
        _press(page, "a")  # 5: on to the last one, claimed for this reviewer
        assert at(page, base, order[5])

        with app.app_context():
            states = [db.session.get(Submission, i).status for i in order]
            assert states == ["approved", "approved", "rejected", "approved", "approved", "in_review"]
            assert db.session.get(Submission, order[5]).claimed_by_id == ids["reviewer"]

        # The same reviewer without JavaScript: the button does what "a" did.
        plain = browser.new_context(java_script_enabled=False)
        no_js = plain.new_page()
        _sign_in(no_js, base, "reviewer@example.com")
        no_js.goto(f"{base}/review/{order[5]}")
        no_js.get_by_role("button", name="Approve and next").click()
        no_js.wait_for_load_state()
        assert "Nothing else in this queue is waiting for you." in _flash(no_js)
        assert re.search(r"/review(\?|$)", no_js.url)
        for c in (context, plain):
            c.close()
    assert all(os.path.exists(os.path.join(os.path.dirname(os.path.dirname(__file__)), "artifacts", f"{n}.png"))
               for n in ("keyboard-queue", "keyboard-pdf-preview", "keyboard-csv-preview"))
