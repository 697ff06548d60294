"""The Kajabi storm, the whole system in its own processes: gunicorn (2 workers), two `flask
worker`s (Kajabi drains and maintenance; delivery, scans and media, as in deploy/), one `flask
scheduler`, the run's PostgreSQL test database and a Redis the test starts on its own port.

The plan is deterministic (a seeded random): unique hooks for ~3 per user over three LEARN tags
(LEARN's cap of 20 makes the third a `cap_reached`), 5% re-deliveries of earlier hooks, 10% of
the users signing up half-way. Hooks are posted at full rate, in chunks, with the faults between
chunks: a SIGKILL of the ledger worker (its whole process group) at 20% and 80%, restarted at
once as a supervisor would, and a restart of Redis, empty, at 60%. A sampler reads the oldest
undelivered outbox record's age throughout.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psycopg
import requests
from sqlalchemy.engine import make_url

from bench import httpload

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
SECRET = "storm-kajabi-secret"
TAGS = ("elevate-ai-1-completed", "elevate-ai-2-completed", "elevate-ai-3-completed")
CHUNKS = 20
KILL_AT = (4, 16)  # chunk numbers (of 20): 20% and 80%
SIGN_UP_AT = 6  # 30%
REDIS_RESTART_AT = 12  # 60%
CONCURRENCY = 16


@dataclass
class Plan:
    users: int
    late: set[int]
    hooks: list[tuple[str, int, str]]  # (event id, user number, tag), in posting order, re-deliveries included

    @property
    def unique(self) -> dict[str, tuple[int, str]]:
        return {event_id: (user, tag) for event_id, user, tag in self.hooks}

    def expected_grants(self) -> set[tuple[str, str]]:
        """(e-mail, tag): one ledger row per tag a user was sent, whatever the number of hooks."""
        return {(email(user), tag) for user, tag in self.unique.values()}


def email(user: int) -> str:
    return f"storm{user}@example.com"


def make_plan(hooks: int, seed: int = 14) -> Plan:
    rng = random.Random(seed)
    redeliveries = hooks // 20
    unique = hooks - redeliveries
    users = max(10, unique // 3)
    late = set(rng.sample(range(users), users // 10))
    order = [(f"storm-{i}", rng.randrange(users), rng.choice(TAGS)) for i in range(unique)]
    for _ in range(redeliveries):  # the same hook again, later than its first delivery
        at = rng.randrange(1, len(order) + 1)
        order.insert(at, order[rng.randrange(at)])
    return Plan(users, late, order)


def hook_body(event_id: str, user: int, tag: str) -> bytes:
    import json

    return json.dumps({"id": event_id, "event": "tag_added", "payload": [
        {"type": "contacts", "id": f"k{user}", "attributes": {"email": email(user), "name": f"Storm {user}"}},
        {"type": "contact_tags", "id": f"t-{tag}", "attributes": {"name": tag}}]}).encode()


def dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class System:
    env: dict
    logdir: str
    port: int
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    killed_workers: list[str] = field(default_factory=list)

    def _start(self, name: str, command: list[str]) -> None:
        out = open(os.path.join(self.logdir, f"{name}.log"), "ab")  # noqa: SIM115 - the child keeps its own copy
        with out:
            # A session of its own, so a SIGKILL takes the process and its children (RQ's scheduler).
            self.procs[name] = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def start_web(self) -> None:
        self._start("web", [os.path.join(VENV_BIN, "gunicorn"), "-c", "deploy/gunicorn.conf.py",
                            "-b", f"127.0.0.1:{self.port}", "app:main_app()"])

    def start_worker(self, name: str) -> None:
        queues = {"ledger-worker": "ledger,maintenance", "delivery-worker": "outbox,scans,media"}[name]
        self._start(name, [os.path.join(VENV_BIN, "flask"), "worker", "--queues", queues])

    def start_scheduler(self) -> None:
        self._start("scheduler", [os.path.join(VENV_BIN, "flask"), "scheduler"])

    def start_all(self) -> None:
        self.start_web()
        self.start_worker("ledger-worker")
        self.start_worker("delivery-worker")
        self.start_scheduler()
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"gunicorn did not answer: {self.log_tail('web')}")
            time.sleep(0.2)

    def sigkill(self, name: str) -> None:
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.killed_workers.append(name)

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def log_tail(self, name: str, chars: int = 3000) -> str:
        try:
            with open(os.path.join(self.logdir, f"{name}.log"), errors="replace") as fh:
                return fh.read()[-chars:]
        except OSError:
            return "(no log)"

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its session
            except ProcessLookupError:
                pass
            proc.wait(10)


class LagSampler(threading.Thread):
    """Every 0.25 s: the age in seconds of the oldest undelivered outbox record (0 when none)."""

    def __init__(self, conninfo: str):
        super().__init__(daemon=True)
        self.conninfo = conninfo
        self.samples: list[tuple[float, float]] = []  # (monotonic time, lag s)
        self._halt = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self._halt.is_set():
                row = conn.execute("SELECT extract(epoch FROM now() - min(created_at)) FROM outbox "
                                   "WHERE status = 'pending'").fetchone()
                self.samples.append((time.monotonic(), float(row[0] or 0.0)))
                self._halt.wait(0.25)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def max_lag(self, excluding: list[tuple[float, float]] = ()) -> float:
        kept = [lag for at, lag in self.samples if not any(start <= at <= end for start, end in excluding)]
        return max(kept, default=0.0)


def post_chunk(port: int, hooks: list[tuple[str, int, str]]) -> list[int]:
    bodies = [hook_body(*hook) for hook in hooks]
    _, statuses = httpload.post_all(f"http://127.0.0.1:{port}/api/webhooks/kajabi?token={SECRET}", bodies,
                                    CONCURRENCY)
    return statuses


def wait_until(condition, seconds: float, what: str, every: float = 0.25):
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting ({seconds:.0f} s): {what}")
        time.sleep(every)
