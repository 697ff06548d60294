"""From the third session's outside review: the review queue's bulk form and the admin outbox at a phone's width (390 px),
with long and odd data: no sideways scrolling, the bulk reject reachable."""
from __future__ import annotations

from core.platform.db import db
from core.platform.models import OutboxRecord
from tests.browser.test_corrections_phone import PHONE, _no_sideways_scroll
from tests.browser.test_review_flow import _shot, _sign_in, browser, pytestmark  # noqa: F401
from tests.conftest import serve
from tests.test_portal_support import insert, people


def test_queue_bulk_form_and_outbox_at_phone_width(make_app, browser):
    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True})
    ids = people(app)
    sids = insert(app, ids["owner"], 12, city="Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch" * 2)
    with app.app_context():
        for i in range(3):
            db.session.add(OutboxRecord(topic="ledger", idempotency_key="k-" + "x" * 180 + str(i), payload={"a": "y" * 500},
                                        status="dead", attempts=8, last_error="sink down: " + "z" * 400))
        db.session.commit()
    with serve(app) as base:
        context = browser.new_context(**PHONE)
        page = context.new_page()
        _sign_in(page, base, "reviewer@example.com")
        page.goto(f"{base}/review")
        _shot(page, "break-queue-phone")
        _no_sideways_scroll(page)
        boxes = page.locator('input[name="submission_ids"]')
        assert boxes.count() >= 2
        boxes.nth(0).check()
        boxes.nth(1).check()
        page.locator('textarea[name="reason"], input[name="reason"]').first.fill("Duplicate")
        page.get_by_role("button", name="Reject").first.click()
        page.wait_for_load_state()
        _shot(page, "break-queue-confirm-phone")
        assert "Reject 2 submission(s)" in page.content()
        _no_sideways_scroll(page)
        context.close()

        context = browser.new_context(**PHONE)
        page = context.new_page()
        _sign_in(page, base, "admin@example.com")
        page.goto(f"{base}/admin/outbox")
        _shot(page, "break-outbox-phone")
        _no_sideways_scroll(page)
        context.close()
