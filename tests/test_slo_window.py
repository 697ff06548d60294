"""/api/slo?window=: the tag -> ledger figure over a chosen window (default 24 h, 5m..28d), with
the alerts' definition of a bad event (ledgered after 60 s, or still waiting past 60 s)."""
from datetime import timedelta

import pytest

from core.monitoring.windows import parse_window
from core.platform.db import db, utcnow
from core.platform.models import KajabiEvent

TOKEN = "metrics-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def slo_client(make_app):
    app = make_app(ENABLE_INTERNAL_ENDPOINTS="1", INTERNAL_METRICS_TOKEN=TOKEN)
    now = utcnow()
    with app.app_context():
        # 20 minutes ago: two on time. 3 hours ago: one slow. 3 days ago: one on time, one slow.
        # 2 minutes ago: one still waiting (bad already). 30 s ago: one waiting (not yet judged).
        for i, (age, delay) in enumerate([(20 * 60, 5), (20 * 60, 10), (3 * 3600, 120), (3 * 86400, 1), (3 * 86400, 300)]):
            received = now - timedelta(seconds=age)
            db.session.add(KajabiEvent(event_id=f"w{i}", event_type="tag_added", payload={}, state="ledgered",
                                       received_at=received, ledgered_at=received + timedelta(seconds=delay)))
        db.session.add(KajabiEvent(event_id="wait-long", event_type="tag_added", payload={}, state="received",
                                   received_at=now - timedelta(minutes=2)))
        db.session.add(KajabiEvent(event_id="wait-short", event_type="tag_added", payload={}, state="received",
                                   received_at=now - timedelta(seconds=30)))
        db.session.commit()
    return app.test_client()


@pytest.mark.parametrize("window, events, within", [("30m", 3, 2), (None, 4, 2), ("24h", 4, 2), ("7d", 6, 3), ("28d", 6, 3)])
def test_the_window_chooses_which_events_count(slo_client, window, events, within):
    query = {} if window is None else {"window": window}
    body = slo_client.get("/api/slo", query_string=query, headers=AUTH).get_json()["kajabi_to_ledger"]
    assert (body["events"], body["within_60s"]) == (events, within)
    assert body["window"] == (window or "24h")
    assert body["ratio"] == round(within / events, 6) and body["met"] is False


@pytest.mark.parametrize("window", ["", "abc", "1w", "24", "-5m", "4m", "29d", "99999d", "1.5h", "24h ", "２４h"])
def test_a_bad_window_is_a_400_envelope_naming_it(slo_client, window):
    response = slo_client.get("/api/slo", query_string={"window": window}, headers=AUTH)
    assert response.status_code == 400
    body = response.get_json()
    assert (body["type"], body["code"]) == ("validation_error", "invalid_parameter")
    assert body["details"][0]["field"] == "window"


def test_the_window_is_checked_after_the_token(slo_client):
    response = slo_client.get("/api/slo?window=abc")  # no token: RFC 6750's 401 comes first
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")


def test_parse_window_bounds():
    assert parse_window(None) == ("24h", timedelta(hours=24))
    assert parse_window("5m")[1] == timedelta(minutes=5) and parse_window("28d")[1] == timedelta(days=28)


def test_the_burn_rate_gauges_are_the_endpoint_s_figures(slo_client):
    """The alerts read points_kajabi_to_ledger_window_ratio{window}: the same numbers /api/slo
    answers for that window."""
    text = slo_client.get("/metrics", headers=AUTH).get_data(as_text=True)
    for window in ("5m", "30m", "1h", "6h"):
        body = slo_client.get(f"/api/slo?window={window}", headers=AUTH).get_json()["kajabi_to_ledger"]
        assert f'points_kajabi_to_ledger_window_ratio{{window="{window}"}} {float(body["ratio"])}' in text
        assert f'points_kajabi_to_ledger_window_events{{window="{window}"}} {float(body["events"])}' in text
    assert 'points_kajabi_to_ledger_window_ratio{window="30m"} 0.666667' in text  # 2 of 3: one still waiting


def test_the_slo_endpoints_answer_with_redis_down(make_app):
    """/api/slo and /metrics are what an operator reads while Redis is down: the figures come from
    PostgreSQL; only the alert's "for 15 minutes" memory and the RQ gauges need Redis (found by the
    outside test: both endpoints answered 500)."""
    app = make_app(ENABLE_INTERNAL_ENDPOINTS="1", INTERNAL_METRICS_TOKEN=TOKEN, REDIS_URL="redis://127.0.0.1:1/0")
    now = utcnow()
    with app.app_context():
        db.session.add(KajabiEvent(event_id="r0", event_type="tag_added", payload={}, state="ledgered",
                                   received_at=now - timedelta(minutes=10), ledgered_at=now - timedelta(minutes=10) + timedelta(seconds=2)))
        db.session.commit()
    client = app.test_client()
    for window in ("5m", "24h"):
        body = client.get("/api/slo", query_string={"window": window}, headers=AUTH)
        assert body.status_code == 200, body.get_data(as_text=True)[:300]
    assert client.get("/api/slo", headers=AUTH).get_json()["kajabi_to_ledger"]["events"] == 1
    scrape = client.get("/metrics", headers=AUTH)
    assert scrape.status_code == 200 and "points_kajabi_to_ledger_ratio 1.0" in scrape.get_data(as_text=True)
