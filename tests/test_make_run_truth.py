"""`make run` tells the truth: the real one-line reason for a bad setting, a refusal before the
banner when the port is taken, a control socket per run, a quiet idle log, and no secret in any
log line of a full flow (tokens, passwords, presigned query strings, session cookies)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from datetime import date, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import REDIS_URL
from tests.evidence_support import CLEAN_PDF
from tests.services.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_PASSWORD = "demo-password"


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "PROMETHEUS_"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path}/run.db", "LOCAL_STORAGE_ROOT": str(tmp_path / "storage"),
                "REDIS_URL": REDIS_URL, "WEB_CONCURRENCY": "1", "QUEUE_PREFIX": f"run-{uuid.uuid4().hex[:8]}:",
                "ANALYTICS_FILE": str(tmp_path / "analytics.jsonl")})
    env.update(extra)
    return env


class Run:
    """scripts/run-local in its own session; every output line is kept with the time it arrived."""

    def __init__(self, port: int, env: dict):
        self.port, self.base = port, f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(["bash", "scripts/run-local", str(port)], cwd=ROOT, env=env,
                                     start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[tuple[float, str]] = []
        self.banner = threading.Event()
        self.scheduler = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line))
            if "Ctrl-C stops web, worker and scheduler" in line:  # the banner's last line
                self.banner.set()
            if line.startswith("scheduler running"):  # its own start-up line may follow the banner
                self.scheduler.set()

    @property
    def output(self) -> str:
        return "".join(line for _, line in self.lines)

    def wait_for_banner(self) -> None:
        if not self.banner.wait(120):
            raise AssertionError(f"no banner:\n{self.output[-3000:]}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                raise
        self.reader.join(10)
        return self.output


def _finished(cmd_env: dict, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/run-local", str(port)], cwd=ROOT, env=cmd_env, capture_output=True,
                          text=True, timeout=120)


def test_a_bad_setting_stops_it_with_the_real_reason(tmp_path):
    result = _finished(_env(tmp_path, MAX_UPLOAD_MB="abc"), free_port())
    assert result.returncode != 0
    assert result.stdout + result.stderr == "error: bad setting: MAX_UPLOAD_MB='abc' is not a whole number\n"


def test_a_taken_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _finished(_env(tmp_path), port)
    assert result.returncode != 0
    assert f"error: port {port} is already in use" in result.stdout + result.stderr
    assert "Portal:" not in result.stdout and not os.path.exists(tmp_path / "run.db")


def test_two_runs_have_their_own_control_sockets_and_an_idle_log_is_quiet(tmp_path):
    first, second = free_port(), free_port()
    runs = [Run(first, _env(tmp_path / "a")), Run(second, _env(tmp_path / "b"))]
    try:
        for run in runs:
            run.wait_for_banner()
            assert run.scheduler.wait(60), run.output
        for port in (first, second):
            assert os.path.exists(os.path.join(ROOT, "instance", f"run-{port}", "gunicorn.ctl"))
        # Idle: the scheduler enqueues outbox delivery every 5 s and the rest every minute; none of
        # that may print a line at the default level (it used to scroll the banner away).
        quiet_from = time.monotonic()
        time.sleep(10)
        noise = [line for run in runs for t, line in run.lines if t >= quiet_from]
        assert noise == [], "".join(noise)
    finally:
        outputs = [run.stop() for run in runs]
    assert all("stopped" in out for out in outputs)


# ---- secrets -------------------------------------------------------------------------------------

def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def _sign_in(base: str, email: str, password: str) -> requests.Session:
    http = requests.Session()
    token = _csrf(http.get(f"{base}/login", timeout=10).text)
    response = http.post(f"{base}/login", data={"email": email, "password": password, "csrf_token": token},
                         headers={"Referer": f"{base}/login"}, allow_redirects=False, timeout=10)
    assert response.status_code in (302, 303, 200)
    return http


def test_no_secret_reaches_any_log_line_of_a_full_flow(tmp_path, s3_endpoint):
    port = free_port()
    s3_port = s3_endpoint["endpoint"].rsplit(":", 1)[1]
    secrets = {
        "SECRET_KEY": "sk-" + uuid.uuid4().hex + uuid.uuid4().hex,
        "KAJABI_WEBHOOK_SECRET": "kw-" + uuid.uuid4().hex,
        "CRON_SECRET": "cr-" + uuid.uuid4().hex,
        "INTERNAL_METRICS_TOKEN": "im-" + uuid.uuid4().hex,
        "MINIO_SECRET_KEY": s3_endpoint["secret_key"],
    }
    env = _env(tmp_path, **secrets, LOG_LEVEL="DEBUG", ENABLE_INTERNAL_ENDPOINTS="1", STORAGE_BACKEND="minio",
               MINIO_ENDPOINT=s3_endpoint["endpoint"], MINIO_ACCESS_KEY=s3_endpoint["access_key"],
               MINIO_REGION=s3_endpoint["region"], MINIO_BUCKET=f"t-{uuid.uuid4().hex[:12]}",
               MINIO_PUBLIC_URL=f"http://localhost:{s3_port}")
    run = Run(port, env)
    base = run.base
    seen: list[str] = []  # everything secret that crossed the wire
    try:
        run.wait_for_banner()
        wrong = "wrong-" + uuid.uuid4().hex
        _sign_in(base, "uploader@example.com", wrong)  # a failed sign-in: its password is not logged either
        # A person with a real password (the demo one is printed in the banner on purpose).
        password = "pw-" + uuid.uuid4().hex
        created = subprocess.run([os.path.join(ROOT, ".venv", "bin", "flask"), "users", "create", "secret@example.com",
                                  "--role", "uploader", "--password", password], cwd=ROOT, env={**env, "FLASK_APP": "app:main_app"},
                                 capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        uploader = _sign_in(base, "secret@example.com", password)
        form = uploader.get(f"{base}/submissions/new", timeout=10).text
        response = uploader.post(f"{base}/submissions/new", timeout=30, headers={"Referer": f"{base}/submissions/new"},
                                 data={"csrf_token": _csrf(form), "activity_code": "EXPLORE",
                                       "session_date": (date.today() - timedelta(days=1)).isoformat()},
                                 files={"files": ("report.pdf", CLEAN_PDF, "application/pdf")}, allow_redirects=False)
        assert response.status_code in (302, 303), response.text[:500]
        submission_id = int(re.search(r"/submissions/(\d+)", response.headers["Location"]).group(1))

        reviewer = _sign_in(base, "reviewer@example.com", DEMO_PASSWORD)
        deadline = time.monotonic() + 60
        while not (found := re.search(r"/api/files/(\d+)", reviewer.get(f"{base}/review/{submission_id}", timeout=10).text)):
            assert time.monotonic() < deadline, "the worker never scanned the file"  # links appear once it is clean
            time.sleep(0.5)
        file_id = int(found.group(1))
        link = reviewer.get(f"{base}/api/files/{file_id}/signed-url", timeout=10)
        assert link.status_code == 200, link.text
        url = link.json()["url"]
        assert requests.get(url, timeout=10).content == CLEAN_PDF
        redirect = reviewer.get(f"{base}/api/files/{file_id}", allow_redirects=False, timeout=10)
        for presigned in (url, redirect.headers["Location"]):
            query = parse_qs(urlsplit(presigned).query)
            seen += [query["X-Amz-Signature"][0], urlsplit(presigned).query]

        hook = {"id": "evt-secret-1", "event": "tag_added", "payload": [
            {"type": "contacts", "id": "c-1", "attributes": {"email": "uploader@example.com", "name": "U"}},
            {"type": "contact_tags", "id": "t-1", "attributes": {"name": "elevate-ai-1-completed"}}]}
        assert requests.post(f"{base}/api/webhooks/kajabi?token={secrets['KAJABI_WEBHOOK_SECRET']}", data=json.dumps(hook),
                             headers={"Content-Type": "application/json"}, timeout=10).status_code == 202
        assert requests.post(f"{base}/api/webhooks/kajabi?token=not-{secrets['KAJABI_WEBHOOK_SECRET']}",
                             data=json.dumps(hook), headers={"Content-Type": "application/json"}, timeout=10).status_code == 403
        bearer = {"Authorization": f"Bearer {secrets['CRON_SECRET']}"}
        assert requests.get(f"{base}/api/cron/enforce-retention?days=730", headers=bearer, timeout=10).status_code == 202
        metrics = {"Authorization": f"Bearer {secrets['INTERNAL_METRICS_TOKEN']}"}
        assert requests.get(f"{base}/metrics", headers=metrics, timeout=10).status_code == 200
        assert requests.get(f"{base}/api/slo?window=1h", headers=metrics, timeout=10).status_code == 200
        assert requests.get(f"{base}/metrics", headers={"Authorization": "Bearer im-guess"}, timeout=10).status_code == 401
        for session in (uploader, reviewer):
            seen += [cookie.value for cookie in session.cookies]
        time.sleep(2)  # let the worker finish the webhook's and the cron's jobs and log them
    finally:
        output = run.stop()

    assert '"path": "/api/webhooks/kajabi"' in output and '"path": "/api/files/' in output  # the log saw the flow
    assert '"level": "DEBUG"' in output  # at its most talkative
    for name, value in [*secrets.items(), ("password", password), ("wrong password", wrong),
                        *(("seen on the wire", v) for v in seen)]:
        assert value not in output, f"{name} appears in the log"
