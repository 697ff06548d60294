"""Logs are JSON lines: one per request with method, path, status, duration and request id;
job lines carry the job id."""
import json

from core.platform.logs import job_id_var
from core.platform.services import services
from jobs import context
from jobs.worker import build_worker


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_one_json_line_per_request(make_app, capfd):
    app = make_app(LOG_LEVEL="INFO")
    client = app.test_client()
    client.get("/healthz", headers={"X-Request-ID": "abc-1"})
    client.get("/api/nope")
    requests = [line for line in _lines(capfd.readouterr().err) if line.get("message") == "request"]
    assert len(requests) == 2
    first, second = requests
    assert (first["method"], first["path"], first["status"], first["request_id"]) == ("GET", "/healthz", 200, "abc-1")
    assert isinstance(first["duration_ms"], float)
    assert (second["path"], second["status"]) == ("/api/nope", 404) and len(second["request_id"]) == 32


def test_job_lines_carry_the_job_id(make_app, capfd):
    app = make_app(LOG_LEVEL="DEBUG")  # a finished job's own line is DEBUG (quiet default log)
    with app.app_context():
        svc = services()
        job = svc.queues.enqueue("maintenance", "jobs.rollups.refresh_recent")
        context.bind(app)
        build_worker(svc).work(burst=True)
    lines = _lines(capfd.readouterr().err)
    assert any(line.get("job_id") == job.id for line in lines), "no log line carried the job id"
    assert job_id_var.get() is None
