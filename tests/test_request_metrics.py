"""Request metrics by route template, method and status: in one process, and added up across
gunicorn workers through prometheus_client's multiprocess mode (deploy/gunicorn.conf.py)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.services import gunicorn

TOKEN = "metrics-token-0123456789"


def _samples(text: str, name: str) -> dict[tuple, float]:
    """{(route, method, status): value} of one counter family in a /metrics body."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                labels = sample.labels
                out[(labels.get("route"), labels.get("method"), labels.get("status"))] = sample.value
    return out


def test_requests_are_counted_by_route_template_not_path(make_app):
    app = make_app(ENABLE_INTERNAL_ENDPOINTS="1", INTERNAL_METRICS_TOKEN=TOKEN)
    client = app.test_client()
    scrape = lambda: client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True)  # noqa: E731
    before = _samples(scrape(), "points_http_requests_total")
    for file_id in (1, 2, 3):
        assert client.get(f"/api/files/{file_id}").status_code == 401
    assert client.get("/no/such/page/12345").status_code == 404
    text = scrape()
    after = _samples(text, "points_http_requests_total")
    delta = lambda key: after.get(key, 0) - before.get(key, 0)  # noqa: E731
    assert delta(("/api/files/<int:file_id>", "GET", "401")) == 3  # one series for every file id
    assert delta(("unmatched", "GET", "404")) == 1
    assert "/no/such/page/12345" not in text and "/api/files/1" not in text.replace("/api/files/<", "")
    assert 'points_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/files/<int:file_id>"}' in text


def test_counts_add_up_across_two_gunicorn_workers(app, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    proc, port = gunicorn.start(tmp_path, ENABLE_INTERNAL_ENDPOINTS="1", INTERNAL_METRICS_TOKEN=TOKEN,
                                WEB_CONCURRENCY="2", WEB_THREADS="1", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    base = f"http://127.0.0.1:{port}"
    try:
        # /readyz, which the counts below leave out: a try that times out may still be counted.
        gunicorn.wait_until_up(proc, port, "/readyz")
        # New connections, several at once, so both workers accept some (they share the listening
        # socket and the kernel picks); batches go on until files from two workers exist.
        sent = {("/healthz", "GET", "200"): 0, ("/api/files/<int:file_id>", "GET", "401"): 0,
                ("unmatched", "GET", "404"): 0}
        paths = [("/healthz", ("/healthz", "GET", "200"))] * 6 + \
                [(f"/api/files/{i}", ("/api/files/<int:file_id>", "GET", "401")) for i in range(1, 4)] + \
                [(f"/nope/{i}", ("unmatched", "GET", "404")) for i in range(2)]

        def hit(item):
            path, key = item
            response = requests.get(base + path, timeout=10, headers={"Connection": "close"})
            assert response.status_code == int(key[2])
            return key

        pids: set[str] = set()
        with ThreadPoolExecutor(max_workers=6) as pool:
            for _ in range(30):
                for key in pool.map(hit, paths):
                    sent[key] += 1
                pids = {name.rsplit("_", 1)[1].split(".")[0] for name in os.listdir(metrics_dir)
                        if name.startswith("counter_")}
                if len(pids) >= 2:
                    break
        assert len(pids) >= 2, f"only {pids} wrote request counts; the test needs both workers to answer"
        # Whichever worker answers the scrape, the totals are the same and add up.
        for _ in range(6):
            text = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}", "Connection": "close"},
                                timeout=10).text
            counts = _samples(text, "points_http_requests_total")
            for key, expected in sent.items():
                assert counts.get(key) == expected, (key, counts)
            hist = _samples(text, "points_http_request_duration_seconds_count")
            assert hist.get(("/healthz", "GET", None)) == sent[("/healthz", "GET", "200")]
    finally:
        gunicorn.stop(proc)
