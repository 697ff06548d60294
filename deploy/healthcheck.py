"""Container health checks for deploy/docker-compose.yml: `python deploy/healthcheck.py web|worker|scheduler`.

web: GET /readyz answers 200 (every dependency ready).
worker: an RQ worker on this host has sent a heartbeat within the last 90 s.
scheduler: the scheduler loop refreshed its heartbeat key (jobs/schedule.py) within 30 s.
Exit 0 when healthy, 1 with one line saying why otherwise.
"""
from __future__ import annotations

import os
import socket
import sys
import urllib.request
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _settings():
    from core.platform.settings import Settings

    return Settings.from_env(os.environ)


def web() -> str | None:
    try:
        with urllib.request.urlopen("http://127.0.0.1:8000/readyz", timeout=4) as response:
            return None if response.status == 200 else f"/readyz answered {response.status}"
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", with its reason
        return f"/readyz: {exc}"


def worker() -> str | None:
    from redis import Redis
    from rq import Worker

    redis = Redis.from_url(_settings().redis_url, socket_connect_timeout=3, socket_timeout=5)
    now = datetime.now(timezone.utc)
    host = socket.gethostname()
    for w in Worker.all(connection=redis):
        beat = w.last_heartbeat
        if w.hostname == host and beat and now - beat.replace(tzinfo=beat.tzinfo or timezone.utc) < timedelta(seconds=90):
            return None
    return f"no RQ worker on {host} has sent a heartbeat in 90 s"


def scheduler() -> str | None:
    from redis import Redis

    from jobs.schedule import heartbeat_key

    settings = _settings()
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)
    return None if redis.exists(heartbeat_key(settings.queue_prefix)) else "the scheduler loop has not ticked in 30 s"


if __name__ == "__main__":
    checks = {"web": web, "worker": worker, "scheduler": scheduler}
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        print(f"usage: healthcheck.py {'|'.join(checks)}", file=sys.stderr)
        sys.exit(2)
    problem = checks[sys.argv[1]]()
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        sys.exit(1)
