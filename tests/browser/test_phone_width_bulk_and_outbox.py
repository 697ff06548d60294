"""From the third session's outside review: the review queue's bulk form and the admin outbox at a phone's width (390 px),
with long and odd data: no sideways scrolling, the bulk reject reachable."""
from __future__ import annotations

import contextlib

from core.platform.db import db
from core.platform.models import OutboxRecord
from tests.browser.test_corrections_phone import PHONE, _no_sideways_scroll
from tests.browser.test_review_flow import _shot, _sign_in, browser, pytestmark  # noqa: F401
from tests.conftest import serve
from tests.test_portal_support import insert, people


@contextlib.contextmanager
def _phone_page(browser, base: str, email: str, path: str, shot: str):
    """A phone-width page signed in as `email` at `path`, screenshot taken, checked for sideways scroll."""
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        _sign_in(page, base, email)
        page.goto(f"{base}{path}")
        _shot(page, shot)
        _no_sideways_scroll(page)
        yield page
    finally:
        context.close()


def test_queue_bulk_form_and_outbox_at_phone_width(make_app, browser):
    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True})
    ids = people(app)
    insert(app, ids["owner"], 12, city="Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch" * 2)
    with app.app_context():
        for i in range(3):
            db.session.add(OutboxRecord(topic="ledger", idempotency_key="k-" + "x" * 180 + str(i), payload={"a": "y" * 500},
                                        status="dead", attempts=8, last_error="sink down: " + "z" * 400))
        db.session.commit()
    with serve(app) as base:
        with _phone_page(browser, base, "reviewer@example.com", "/review", "phone-queue-long-data") as page:
            boxes = page.locator('input[name="submission_ids"]')
            assert boxes.count() >= 2
            boxes.nth(0).check()
            boxes.nth(1).check()
            page.locator('textarea[name="reason"], input[name="reason"]').first.fill("Duplicate")
            page.get_by_role("button", name="Reject").first.click()
            page.wait_for_load_state()
            _shot(page, "phone-queue-confirm")
            assert "Reject 2 submission(s)" in page.content()
            _no_sideways_scroll(page)
        with _phone_page(browser, base, "admin@example.com", "/admin/outbox", "phone-outbox-long-data") as page:
            assert "sink down: " in page.content()
