"""`flask worker` outlives a Redis outage: its Redis (one the test starts on its own port, never
the shared one) is killed while a job runs and started again, empty; the worker waits, reconnects
with back-off, runs the next job, and exits only on SIGTERM. Before, a worker that finished a job
while Redis was down exited with status 1 and nothing brought it back under `make run`."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from rq import Queue, Worker
from rq.job import JobStatus

from tests.conftest import base_env
from tests.services.redis_server import own_redis_server  # noqa: F401 - a fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLASK = os.path.join(ROOT, ".venv", "bin", "flask")


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.1)


def _status(job) -> str | None:
    try:
        return job.get_status(refresh=True)
    except Exception:  # noqa: BLE001 - Redis may be away or the job forgotten
        return None


def test_a_worker_survives_redis_going_away_mid_job_and_exits_only_on_a_signal(app, own_redis_server, tmp_path):
    settings = app.extensions["points"].settings
    env = {**os.environ, **base_env(settings.local_storage_root), "REDIS_URL": own_redis_server.url,
           "FLASK_APP": "app:main_app", "LOG_LEVEL": "WARNING"}
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - the child writes to it
    worker = subprocess.Popen([FLASK, "worker", "--queues", "maintenance"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    redis = own_redis_server.client()
    queue = Queue("maintenance", connection=redis)
    try:
        _wait(lambda: Worker.count(connection=redis) > 0, 60, "the worker to register")
        busy = queue.enqueue("time.sleep", 2)
        _wait(lambda: _status(busy) == JobStatus.STARTED, 30, "the job to start")
        own_redis_server.stop()  # mid-job; it finishes while Redis is away
        time.sleep(4)
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
        own_redis_server.start()  # empty: whatever it held is gone
        after = Queue("maintenance", connection=redis).enqueue("os.getpid")
        _wait(lambda: _status(after) == JobStatus.FINISHED, 90, "a job after Redis came back")
        assert after.return_value() == worker.pid and worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        log.close()
