"""Delivery never waits behind Kajabi drains: `make run` and deploy/ give the outbox a worker that
never drains, and a worker on every queue takes a waiting delivery before the next drain."""
from __future__ import annotations

import os
import re
import shlex

import yaml
from rq.job import Job

from core.platform.services import services
from jobs import context
from jobs.worker import build_worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _queue_sets(commands: list[str]) -> list[set[str]]:
    sets = []
    for command in commands:
        words = shlex.split(command)
        names = words[words.index("--queues") + 1] if "--queues" in words else "scans,media,outbox,ledger,maintenance"
        sets.append(set(names.split(",")))
    return sets


def _assert_delivery_has_its_own_worker(sets: list[set[str]], where: str) -> None:
    assert any("outbox" in s and "ledger" not in s for s in sets), f"{where}: no worker delivers without draining"
    assert all("outbox" not in s for s in sets if "ledger" in s), f"{where}: a drain worker also delivers"


def test_make_run_and_compose_run_delivery_and_drains_in_separate_workers():
    with open(os.path.join(ROOT, "scripts", "run-local")) as fh:
        run_local = [line.split("&")[0] for line in fh if re.match(r"\s*\.venv/bin/flask worker\b", line)]
    _assert_delivery_has_its_own_worker(_queue_sets(run_local), "scripts/run-local")
    with open(os.path.join(ROOT, "deploy", "docker-compose.yml")) as fh:
        compose = yaml.safe_load(fh)
    workers = [svc["command"] for svc in compose["services"].values()
               if str(svc.get("command", "")).startswith("flask worker")]
    _assert_delivery_has_its_own_worker(_queue_sets(workers), "deploy/docker-compose.yml")


def test_a_worker_on_every_queue_takes_a_waiting_delivery_before_a_drain(app):
    with app.app_context():
        svc = services()
        drain = svc.queues.enqueue("ledger", "os.getpid")  # queued first
        delivery = svc.queues.enqueue("outbox", "os.getpid")
        context.bind(app)
        build_worker(svc).work(burst=True, max_jobs=1)
    assert Job.fetch(delivery.id, connection=app.extensions["points"].redis).get_status() == "finished"
    assert Job.fetch(drain.id, connection=app.extensions["points"].redis).get_status() == "queued"
