"""Tenth session's second outside pass, at a phone's width (375 x 812) in Debian's headless
Chromium: the review page of a submission with a 20 x 20 CSV table of 200-character cells (and a
long unbroken file name), and the "No preview" message of a made CSV preview whose table is gone.
Only the table's own box may scroll sideways; the decision form stays reachable."""
from __future__ import annotations

from sqlalchemy import text

from core.platform.db import db
from core.platform.models import Submission
from tests.browser.test_review_flow import _shot, _sign_in, browser, pytestmark  # noqa: F401  (fixture, skip mark)
from tests.conftest import serve
from tests.test_portal_support import people, run_worker, submit

PHONE = {"viewport": {"width": 375, "height": 812}, "device_scale_factor": 1, "is_mobile": True, "has_touch": True}


def _wide_csv() -> bytes:
    # Unbroken 200-character cells (no space to wrap at), a formula in each row's first cell.
    rows = [",".join(["=HYPERLINK(\"http://x\")" + "W" * 178] + [chr(65 + c % 26) * 200 for c in range(1, 20)])
            for _ in range(20)]
    return ("\n".join(rows) + "\n").encode()


def _page_state(page) -> dict:
    return page.evaluate("""() => {
        const box = document.querySelector('.table-scroll');
        const form = document.querySelector('#decision');
        const approve = form && form.querySelector('[data-key="a"]');
        const r = approve && approve.getBoundingClientRect();
        return {doc: document.scrollingElement.scrollWidth,
                box: box ? box.clientWidth : null, table: box ? box.scrollWidth : null,
                approve: r ? [r.left, r.right] : null};
    }""")


def test_a_20x20_table_of_200_char_cells_scrolls_only_in_its_box_at_375px(make_app, browser):
    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True})
    ids = people(app)
    name = "attendance-" + "x" * 150 + ".csv"
    sid, (fid,) = submit(app, ids["owner"], [(name, _wide_csv())])
    run_worker(app)
    with app.app_context():
        assert db.session.get(Submission, sid).status == "in_review"
    with serve(app) as base:
        context = browser.new_context(**PHONE)
        page = context.new_page()
        _sign_in(page, base, "reviewer@example.com")
        page.goto(f"{base}/review/{sid}")
        assert page.get_by_test_id(f"csv-{fid}").count() == 1
        assert page.get_by_test_id(f"formulas-{fid}").count() == 1
        state = _page_state(page)
        _shot(page, "outside-s10-phone-wide-csv")
        assert state["table"] > state["box"], state  # the table is wider and scrolls inside its box
        assert state["doc"] <= 375, f"the whole page is {state['doc']} px wide at 375 px: {state}"
        assert state["approve"] is not None and 0 <= state["approve"][0] and state["approve"][1] <= 375, state
        page.get_by_role("button", name="Claim for 30 minutes").click()
        page.wait_for_load_state()
        page.locator('#decision [data-key="a"]').scroll_into_view_if_needed()
        assert page.locator('#decision [data-key="a"]').is_visible()
        context.close()


def test_the_no_preview_message_at_375px(make_app, browser):
    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True})
    ids = people(app)
    sid, (fid,) = submit(app, ids["owner"], [("list.csv", _wide_csv())])
    run_worker(app)
    with app.app_context():
        db.session.execute(text("UPDATE evidence_files SET preview_table = NULL WHERE id = :i"), {"i": fid})
        db.session.commit()
    with serve(app) as base:
        context = browser.new_context(**PHONE)
        page = context.new_page()
        _sign_in(page, base, "reviewer@example.com")
        page.goto(f"{base}/review/{sid}")
        message = page.get_by_test_id(f"no-preview-{fid}")
        assert "no longer stored" in message.inner_text()
        box = message.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, box
        state = _page_state(page)
        _shot(page, "outside-s10-phone-no-preview")
        assert state["doc"] <= 375, state
        assert state["approve"] is not None and state["approve"][1] <= 375, state
        context.close()
