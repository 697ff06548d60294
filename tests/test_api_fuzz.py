"""Schemathesis against the live API: gunicorn on a free port, this run's PostgreSQL database and
Redis db, every security scheme of the OpenAPI document filled in (webhook secret, cron bearer,
internal metrics token, a signed-in reviewer's session cookie), and real evidence files present
and clean, so the files routes reach their 200 paths (id 1 is a clean PNG with its thumbnail, id 2
a clean PDF; the spec's minimum id is 1, which the coverage phase always tries).

Checks: no 5xx (not_a_server_error), every response matches the document
(response_schema_conformance, and its status code and content type are documented ones), and
data the document refuses is refused (negative_data_rejection).
Bounded and repeatable: deterministic generation (no random seed, no example database) and a fixed
number of examples per operation. The figures of a run go to docs/reliability.md.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import base_env
from tests.evidence_support import CLEAN_PDF, PASSWORD, png, run_worker, setup_people, submit
from tests.services.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
SECRETS = {"KAJABI_WEBHOOK_SECRET": "fuzz-webhook-secret", "CRON_SECRET": "fuzz-cron-secret",
           "INTERNAL_METRICS_TOKEN": "fuzz-metrics-token"}
USER_AGENT = "points-api-fuzz"  # the session is bound to it (Flask-Login session_protection="strong")
MAX_EXAMPLES = 150
CHECKS = "not_a_server_error,response_schema_conformance,negative_data_rejection,status_code_conformance,content_type_conformance"
RUN_TIMEOUT_S = 400


@pytest.fixture
def live_api(make_app, tmp_path):
    """(base URL, reviewer session cookie): gunicorn serving the test slot's database, with
    a clean PNG with a thumbnail (id 1) and a clean PDF (id 2) stored under its storage root."""
    app = make_app(**SECRETS)
    people = setup_people(app)
    _, files = submit(app, people["owner"], [("photo.png", png()), ("report.pdf", CLEAN_PDF)])
    assert files == [1, 2]
    run_worker(app)  # scans (built-in EICAR scanner: clean) and makes the thumbnail
    port = free_port()
    env = {**os.environ, **base_env(app.extensions["points"].settings.local_storage_root), **SECRETS,
           "ENABLE_INTERNAL_ENDPOINTS": "1", "WEB_CONCURRENCY": "2", "WEB_THREADS": "4"}
    log = open(tmp_path / "gunicorn.log", "wb")
    server = subprocess.Popen([os.path.join(BIN, "gunicorn"), "-c", "deploy/gunicorn.conf.py",
                               "--bind", f"127.0.0.1:{port}", "--no-control-socket", "app:main_app()"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base, server)
        yield base, _sign_in(base, "reviewer@example.com")
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_up(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "gunicorn exited at start-up"
        try:
            if requests.get(f"{base}/healthz", timeout=10).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    raise AssertionError("gunicorn did not answer /healthz within 60 s")


def _sign_in(base: str, email: str) -> str:
    """Sign in through the portal's form (CSRF on, as in production); returns the session cookie."""
    http = requests.Session()
    http.headers["User-Agent"] = USER_AGENT
    form = http.get(f"{base}/login", timeout=10).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form) \
        or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', form)
    response = http.post(f"{base}/login", data={"csrf_token": token.group(1), "email": email, "password": PASSWORD},
                         headers={"Referer": f"{base}/login"}, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text[:300]
    return http.cookies["session"]


def test_schemathesis_finds_no_server_error_and_no_disagreement_with_the_spec(live_api, tmp_path):
    base, session = live_api
    # Each key is a securityScheme of api/openapi.py.
    schemes = {"cron": ("bearer", SECRETS["CRON_SECRET"]), "internal": ("bearer", SECRETS["INTERNAL_METRICS_TOKEN"]),
               "internal_header": ("api_key", SECRETS["INTERNAL_METRICS_TOKEN"]),
               "webhook_token": ("api_key", SECRETS["KAJABI_WEBHOOK_SECRET"]),
               "webhook_header": ("api_key", SECRETS["KAJABI_WEBHOOK_SECRET"]), "session": ("api_key", session)}
    (tmp_path / "schemathesis.toml").write_text(
        "".join(f'[auth.openapi.{name}]\n{kind} = "{value}"\n' for name, (kind, value) in schemes.items()))
    command = [os.path.join(BIN, "st"), "--config-file", str(tmp_path / "schemathesis.toml"), "run",
               f"{base}/api/openapi.json", "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES),
               "--generation-deterministic",
               # One worker: two threads made CPython 3.11's ast.parse fail inside hypothesis (SystemError
               # "AST constructor recursion depth mismatch"), a schemathesis runtime error, not a finding.
               "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "20",
               "--header", f"User-Agent: {USER_AGENT}", "--no-color", "--suppress-health-check", "all",
               "--report", "har", "--report-har-path", str(tmp_path / "run.har")]
    started = time.monotonic()
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    seconds = time.monotonic() - started
    output = run.stdout + run.stderr
    print(output[-3000:])
    print(f"schemathesis: {seconds:.0f} s")
    assert run.returncode == 0, output[-6000:]
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
    assert selected and selected.group(1) == selected.group(2) == selected.group(3), output[-2000:]
    assert int(selected.group(3)) >= 10  # every operation but the document itself
    cases = re.search(r"Test cases:\s+(\d+) generated, (\d+) passed", output)
    assert cases and cases.group(1) == cases.group(2) and int(cases.group(1)) > 500, output[-2000:]
    reached = _statuses(tmp_path / "run.har")
    for operation, status in [("GET /api/files/1", 200), ("GET /api/files/1/signed-url", 200),
                              ("GET /api/files/1/thumbnail", 200), ("POST /api/files/signed-urls", 200),
                              ("POST /api/webhooks/kajabi", 202), ("GET /api/cron/enforce-retention", 202),
                              ("GET /api/slo", 200), ("GET /api/stats", 200)]:
        assert status in reached.get(operation, set()), (operation, reached.get(operation))
    assert not any(s >= 500 for statuses in reached.values() for s in statuses)
    print(f"FUZZ operations={selected.group(3)} cases={cases.group(1)} seconds={seconds:.0f}")


def _statuses(har_path) -> dict[str, set[int]]:
    """{"METHOD /path": {statuses}} from schemathesis' HAR report (the path without its query)."""
    import json
    from urllib.parse import urlsplit

    out: dict[str, set[int]] = {}
    for entry in json.loads(har_path.read_text())["log"]["entries"]:
        key = f"{entry['request']['method']} {urlsplit(entry['request']['url']).path}"
        out.setdefault(key, set()).add(entry["response"]["status"])
    return out
