"""Shared benchmark plumbing: a temporary PostgreSQL database (created, migrated, dropped), a
Redis db of its own, and gunicorn / `flask worker` processes on loopback."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid

import psycopg
from redis import Redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


@contextlib.contextmanager
def temp_environment(redis_db: int | None, tmp_dir: str, **extra: str):
    """Yields (env, dsn): a migrated throwaway database and a flushed Redis db; both cleaned after.
    redis_db None: a benchmark that queues nothing (give it a QUEUE_PREFIX of its own) gets db 0
    and nothing is flushed, so it cannot wipe a db another benchmark or a test is using."""
    name = f"points_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis_url = f"redis://127.0.0.1:6379/{redis_db or 0}"
    env = {**os.environ, "APP_ENV": "testing", "SECRET_KEY": "bench-secret-key-0123456789abcdef0123456789",
           "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", "REDIS_URL": redis_url,
           "LOCAL_STORAGE_ROOT": os.path.join(tmp_dir, "storage"), "ANALYTICS_FILE": os.path.join(tmp_dir, "analytics.jsonl"),
           "LOG_LEVEL": "WARNING", "FLASK_APP": "app:main_app", **extra}
    if redis_db is not None:
        Redis.from_url(redis_url).flushdb()
    try:
        subprocess.run([os.path.join(VENV_BIN, "flask"), "db", "upgrade"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield env, f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        if redis_db is not None:
            Redis.from_url(redis_url).flushdb()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def processes(commands: list[list[str]], env: dict):
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for cmd in commands]
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def verdict(ok: bool) -> str:
    """How every benchmark prints a goal's outcome."""
    return "met" if ok else "NOT met"


def wait_http(url: str, timeout: float = 30) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"error: {url} did not answer within {timeout:.0f} s")


FIGURE_TAG = "FIGURE\t"


def figure(goal: str, name: str, now: str, baseline: str, ok: bool | None) -> None:
    """Print one of the issue's figures in the line bench.report collects: the goal it belongs to,
    what was measured, the figure, its same-run baseline (or bound) and the verdict (None: no
    verdict, e.g. a figure printed for comparison only)."""
    state = "-" if ok is None else verdict(ok)
    print(FIGURE_TAG + "\t".join((goal, name, now, baseline, state)), flush=True)
