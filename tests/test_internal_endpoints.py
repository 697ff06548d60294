"""/api/slo and /metrics: gated, constant-time token, and numbers that follow the data."""
from datetime import timedelta

import pytest

from core.platform.db import db, utcnow
from core.platform.models import EvidenceFile, KajabiEvent, OutboxRecord, Submission, User
from core.points.catalogue import seed_catalogue
from core.monitoring.slo import queued_unmatched

TOKEN = "metrics-token-0123456789"


@pytest.fixture
def internal_app(make_app):
    return make_app(ENABLE_INTERNAL_ENDPOINTS="1", INTERNAL_METRICS_TOKEN=TOKEN, UNMATCHED_ALERT_THRESHOLD="2")


@pytest.mark.parametrize("path", ["/api/slo", "/metrics"])
def test_off_by_default_answers_404(client, path):
    response = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404 and response.get_json()["type"] == "not_found"


@pytest.mark.parametrize("path", ["/api/slo", "/metrics"])
def test_on_without_a_token_configured_answers_403(make_app, path):
    app = make_app(ENABLE_INTERNAL_ENDPOINTS="1")
    response = app.test_client().get(path, headers={"Authorization": "Bearer "})
    assert response.status_code == 403 and response.get_json()["code"] == "not_configured"


@pytest.mark.parametrize("path", ["/api/slo", "/metrics"])
@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"Authorization": f"Bearer {TOKEN}x"}, 401),
    ({"X-Internal-Metrics-Token": "wrong"}, 401),
    ({"Authorization": f"Bearer {TOKEN}"}, 200),
    ({"X-Internal-Metrics-Token": TOKEN}, 200),
])
def test_token_gate(internal_app, path, headers, status):
    response = internal_app.test_client().get(path, headers=headers)
    assert response.status_code == status


def _seed(app):
    now = utcnow()
    with app.app_context():
        seed_catalogue()
        user = User(email="u@example.com", role="uploader")
        db.session.add(user)
        db.session.flush()
        for i, delay in enumerate([1, 2, 3, 90]):  # one of four missed the 60 s target
            db.session.add(KajabiEvent(event_id=f"e{i}", event_type="tag_added", payload={}, state="ledgered",
                                       received_at=now - timedelta(minutes=5), ledgered_at=now - timedelta(minutes=5) + timedelta(seconds=delay)))
        for i in range(3):
            db.session.add(KajabiEvent(event_id=f"u{i}", event_type="tag_added", payload={}, state="queued_unmatched",
                                       received_at=now - timedelta(minutes=20 + i)))
        db.session.add(OutboxRecord(topic="ledger.recorded", idempotency_key="k1", payload={}, status="pending",
                                    created_at=now - timedelta(seconds=30)))
        db.session.add(OutboxRecord(topic="ledger.recorded", idempotency_key="k2", payload={}, status="dead"))
        sub = Submission(user_id=user.id, activity_code="EXPLORE", session_date=now.date(), status="scanning")
        db.session.add(sub)
        db.session.flush()
        db.session.add(EvidenceFile(submission_id=sub.id, user_id=user.id, activity_code="EXPLORE", storage_key="evidence/1/EXPLORE/a.pdf",
                                    original_name="a.pdf", ext="pdf", content_type="application/pdf", size_bytes=1,
                                    sha256="0" * 64, scan_state="pending", created_at=now - timedelta(seconds=120)))
        db.session.commit()


def test_slo_summary_follows_the_data(internal_app):
    _seed(internal_app)
    body = internal_app.test_client().get("/api/slo", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
    k = body["kajabi_to_ledger"]
    assert (k["events"], k["within_60s"], k["ratio"], k["objective"], k["met"]) == (4, 3, 0.75, 0.999, False)
    assert k["p50_seconds"] == pytest.approx(2.5, abs=0.01) and k["p99_seconds"] > 60
    u = body["queued_unmatched"]
    assert (u["count"], u["threshold"]) == (3, 2) and u["oldest_age_s"] >= 22 * 60
    assert u["alert_firing"] is False  # above the threshold, but only just noticed
    assert body["outbox"]["pending"] == 1 and body["outbox"]["dead"] == 1 and body["outbox"]["oldest_age_s"] >= 30
    assert body["scans"]["pending"] == 1 and body["scans"]["oldest_age_s"] >= 120


def test_the_28_day_figure_is_computed_once_a_minute_for_every_reader(internal_app, redis_conn):
    _seed(internal_app)
    client = internal_app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    first = client.get("/api/slo?window=28d", headers=auth).get_json()["kajabi_to_ledger"]
    with internal_app.app_context():  # a fifth event lands, on time
        now = utcnow()
        db.session.add(KajabiEvent(event_id="e-late-arrival", event_type="tag_added", payload={}, state="ledgered",
                                   received_at=now - timedelta(seconds=10), ledgered_at=now))
        db.session.commit()
    # Within the minute, both endpoints report the figure already computed, and say when.
    again = client.get("/api/slo?window=28d", headers=auth).get_json()["kajabi_to_ledger"]
    assert again == first and first["events"] == 4 and first["computed_at"]
    scraped = client.get("/metrics", headers=auth).get_data(as_text=True)
    assert "points_kajabi_to_ledger_ratio 0.75" in scraped
    assert 'points_kajabi_events{state="ledgered"} 5.0' in scraped  # first asked for now
    with internal_app.app_context():  # a sixth lands; the per-state count is now cached too
        db.session.add(KajabiEvent(event_id="e-later", event_type="tag_added", payload={}, state="received",
                                   received_at=utcnow()))
        db.session.commit()
    assert 'points_kajabi_events{state="received"}' not in client.get("/metrics", headers=auth).get_data(as_text=True)
    for key in ("slo:kajabi_to_ledger", "slo:table_counts"):
        assert 0 < redis_conn.ttl(key) <= 60
        redis_conn.delete(key)  # as if the minute had passed
    fresh = client.get("/api/slo?window=28d", headers=auth).get_json()["kajabi_to_ledger"]
    assert (fresh["events"], fresh["within_60s"], fresh["ratio"]) == (5, 4, 0.8)
    assert fresh["computed_at"] > first["computed_at"]
    rescraped = client.get("/metrics", headers=auth).get_data(as_text=True)
    assert 'points_kajabi_events{state="ledgered"} 5.0' in rescraped
    assert 'points_kajabi_events{state="received"} 1.0' in rescraped


def test_unmatched_alert_fires_after_fifteen_minutes_above_threshold(internal_app, redis_conn):
    _seed(internal_app)
    now = utcnow()
    with internal_app.app_context():
        assert queued_unmatched(redis_conn, 2, now)["alert_firing"] is False
        assert queued_unmatched(redis_conn, 2, now + timedelta(minutes=14))["alert_firing"] is False
        assert queued_unmatched(redis_conn, 2, now + timedelta(minutes=16))["alert_firing"] is True
        # Dropping to the threshold clears the clock.
        assert queued_unmatched(redis_conn, 3, now + timedelta(minutes=17))["alert_firing"] is False
        assert queued_unmatched(redis_conn, 2, now + timedelta(minutes=18))["alert_firing"] is False


def test_metrics_are_prometheus_text(internal_app):
    _seed(internal_app)
    response = internal_app.test_client().get("/metrics", headers={"X-Internal-Metrics-Token": TOKEN})
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.get_data(as_text=True)
    assert "points_kajabi_queued_unmatched 3.0" in text
    assert "points_outbox_dead 1.0" in text and "points_scans_pending 1.0" in text
    assert 'points_kajabi_events{state="ledgered"} 4.0' in text
    assert "points_kajabi_to_ledger_ratio 0.75" in text
    assert 'points_rq_queue_depth{queue="scans"}' in text


def test_alert_rules_use_metrics_that_exist(internal_app):
    import os
    import re

    import yaml

    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "deploy", "prometheus", "alerts.yml")
    rules = [rule for group in yaml.safe_load(open(path))["groups"] for rule in group["rules"]]
    assert any(r["alert"] == "KajabiUnmatchedBacklog" and r["for"] == "15m" for r in rules)
    _seed(internal_app)
    internal_app.test_client().get("/healthz")  # request metrics appear once a request was answered
    text = internal_app.test_client().get("/metrics", headers={"X-Internal-Metrics-Token": TOKEN}).get_data(as_text=True)
    exposed = set(re.findall(r"^(points_[a-z0-9_]+)", text, re.M))
    for rule in rules:
        for name in re.findall(r"points_[a-z0-9_]+", rule["expr"]):
            assert name in exposed, f"alert {rule['alert']} uses {name}, which /metrics does not expose"


def test_every_alert_names_a_runbook_section_that_exists():
    import os
    import re

    import yaml

    root = os.path.dirname(os.path.dirname(__file__))
    rules = [rule for group in yaml.safe_load(open(os.path.join(root, "deploy", "prometheus", "alerts.yml")))["groups"]
             for rule in group["rules"]]
    doc = open(os.path.join(root, "docs", "operations.md"), encoding="utf-8").read()
    # GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens.
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", doc, re.M)}
    assert any(r["alert"] == "PointsMetricsDown" and "up{" in r["expr"] for r in rules)
    for rule in rules:
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/operations.md" and anchor in anchors, f"{rule['alert']}: no section #{anchor}"

