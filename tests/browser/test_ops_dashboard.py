"""Admin -> Operations in Debian's headless Chromium at desktop and phone width: the tiles and
the three SVG charts load under the page's CSP (no console errors, nothing blocked), nothing
overflows sideways on a 390 px phone. Screenshots: tests/artifacts/ops-dashboard-{desktop,phone}.png."""
from __future__ import annotations

import pytest

from tests.browser.test_review_flow import ARGS, CHROMIUM, _shot, _sign_in, browser  # noqa: F401  (fixture)
from tests.conftest import serve
from tests.ops_support import build_picture

pytestmark = pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed")


VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def test_operations_dashboard_renders_at_desktop_and_phone_width(make_app, browser):  # noqa: F811
    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True})
    build_picture(app)
    with serve(app) as base:
        for name, viewport in VIEWPORTS.items():
            context = browser.new_context(viewport=viewport, device_scale_factor=1)
            page = context.new_page()
            problems = []
            # Any refused or failed load (a CSP block, a missing chart) shows up here; the browser's
            # own favicon probe is not the page's.
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
            page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
            page.on("console", lambda m: problems.append(m.text)
                    if m.type == "error" and "favicon" not in (m.location or {}).get("url", "") else None)
            _sign_in(page, base, "admin@example.com")
            page.goto(f"{base}/admin/operations")
            page.wait_for_load_state("networkidle")
            assert page.locator("h1").inner_text() == "Operations"
            assert page.locator(".tile").count() == 10
            assert page.locator(".tile-bad").count() >= 3  # unmatched, infected, integrity
            charts = page.locator("figure.chart img")
            assert charts.count() == 3
            for i in range(3):
                assert page.evaluate("img => img.complete && img.naturalWidth", charts.nth(i).element_handle()) > 0
                assert charts.nth(i).bounding_box()["width"] <= viewport["width"]
            wide = page.evaluate("""w => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > w + 1)
                                       .slice(0, 5).map(e => e.tagName + '.' + e.className)""", viewport["width"])
            assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"], wide
            assert problems == [], name
            _shot(page, f"ops-dashboard-{name}")
            context.close()
