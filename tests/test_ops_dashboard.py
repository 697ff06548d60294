"""Admin -> Operations: KPI tiles, the files that need attention, server-rendered SVG charts (no
script, nothing from elsewhere), the page's CSP unchanged; and the per-minute sampling job."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from core.monitoring import ops_samples
from core.platform.db import db, utcnow
from core.platform.models import OpsSample
from core.platform.web import PAGE_CSP
from jobs.schedule import periodic_job_definitions
from tests.evidence_support import setup_people, sign_in
from tests.ops_support import build_picture


@pytest.fixture
def picture(app):
    return app, build_picture(app)


def _tiles(html: str) -> dict[str, str]:
    pairs = re.findall(r'<span class="tile-label">([^<]+)</span>\s*<span class="tile-value">(?:<a [^>]+>)?([^<]+)', html)
    return {label.strip(): value.strip() for label, value in pairs}


def test_tiles_and_attention_list_follow_the_data(picture):
    app, seeded = picture
    client = app.test_client()
    sign_in(client, "admin")
    response = client.get("/admin/operations")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == PAGE_CSP
    html = response.get_data(as_text=True)
    tiles = _tiles(html)
    assert tiles["In review"] == "2" and tiles["Unmatched Kajabi events"] == "3"
    assert (tiles["Infected files"], tiles["Integrity mismatches"], tiles["Unscannable files"]) == ("1", "1", "0")
    assert tiles["Decided today"] == "0" and tiles["Outbox dead letters"] == "0"
    assert "notes.csv" in html and "integrity mismatch" in html and "owner@example.com" in html
    assert "38 of 40 tag events reached the ledger within 60 s" in html
    assert "<script>" not in html and "style=" not in html  # the CSP forbids both
    assert 'href="/static/ops.css"' in html


@pytest.mark.parametrize("name, words", [("points", ["LEARN", "EXPLORE", "AMPLIFY"]),
                                         ("latency", ["within 60 s", "over 60 s"]),
                                         ("backlogs", ["queue scans", "pending scans", "outbox lag"])])
def test_charts_are_self_contained_svg(picture, name, words):
    app, _ = picture
    client = app.test_client()
    sign_in(client, "admin")
    response = client.get(f"/admin/operations/charts/{name}.svg")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert response.headers["Cache-Control"] == "private, no-store"
    svg = response.get_data(as_text=True)
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    markup = re.sub(r"<!--.*?-->", "", svg, flags=re.S)  # pygal signs its output in comments
    assert "<script" not in markup and "kozea" not in markup.lower()
    assert "//" not in re.sub(r'xmlns(:\w+)?="[^"]+"', "", markup)  # nothing loaded from anywhere
    for word in words:
        assert word in svg


def test_only_admins_see_it(app):
    setup_people(app)
    client = app.test_client()
    sign_in(client, "reviewer")
    assert client.get("/admin/operations").status_code == 403
    assert client.get("/admin/operations/charts/points.svg").status_code == 403
    anonymous = app.test_client().get("/admin/operations")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    admin = app.test_client()
    sign_in(admin, "admin")
    assert admin.get("/admin/operations/charts/nope.svg").status_code == 404


def test_an_empty_system_draws_empty_charts(app):
    setup_people(app)
    client = app.test_client()
    sign_in(client, "admin")
    assert "No infected, unscannable or quarantined files." in client.get("/admin/operations").get_data(as_text=True)
    for name in ("points", "latency", "backlogs"):
        assert client.get(f"/admin/operations/charts/{name}.svg").status_code == 200


def test_sampling_writes_one_row_a_minute_and_trims_old_ones(app):
    queues = app.extensions["points"].queues
    now = utcnow().replace(second=30)
    with app.app_context():
        db.session.add(OpsSample(taken_at=now - ops_samples.RETENTION - timedelta(minutes=5), queue_depths={}))
        db.session.commit()
        queues.enqueue("scans", "jobs.scans.sweep_pending")
        assert ops_samples.sample(queues, now) == {"written": True, "trimmed": 1}
        assert ops_samples.sample(queues, now + timedelta(seconds=20)) == {"written": False, "trimmed": 0}
        rows = db.session.query(OpsSample).all()
        assert len(rows) == 1 and rows[0].queue_depths["scans"] == 1 and rows[0].taken_at.second == 0
        assert ops_samples.sample(queues, now + timedelta(minutes=1))["written"] is True
    entries = {e["name"]: e for e in periodic_job_definitions()}
    assert entries["ops-sample"]["interval"] == 60 and entries["ops-sample"]["func"] == "jobs.ops.sample"
    assert entries["integrity-sweep"]["func"] == "jobs.integrity.sweep"


def test_the_admin_overview_flags_what_needs_attention(picture):
    app, _ = picture
    client = app.test_client()
    sign_in(client, "admin")
    html = client.get("/admin").get_data(as_text=True)
    assert "Needs attention:" in html
    assert "1 infected file this week," in html and "1 file quarantined after an integrity mismatch." in html
    attention = html[html.index("Needs attention:"):]
    attention = attention[:attention.index("</")]  # the sentence itself (the tabs name "Unscannable files")
    assert "unscannable" not in attention and "dead letter" not in attention


def test_a_quiet_overview_flags_nothing(app):
    setup_people(app)
    client = app.test_client()
    sign_in(client, "admin")
    assert "Needs attention" not in client.get("/admin").get_data(as_text=True)


def test_the_scheduled_sampling_job_runs_in_a_real_worker(app):
    from tests.evidence_support import run_worker

    entry = {e["name"]: e for e in periodic_job_definitions()}["ops-sample"]
    job = app.extensions["points"].queues.enqueue(entry["queue"], entry["func"], timeout=entry["timeout"])
    run_worker(app)
    job.refresh()
    assert job.get_status() == "finished" and job.return_value()["written"] is True
    with app.app_context():
        sample = db.session.query(OpsSample).one()
        assert set(sample.queue_depths) == {"scans", "media", "ledger", "outbox", "maintenance"}
