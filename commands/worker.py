"""flask worker [--burst] and flask scheduler."""
from __future__ import annotations

import click
from flask import current_app
from sqlalchemy.orm import configure_mappers

from commands.failures import first_line
from commands.params import WholeNumberRange
from core.platform.db import db
from core.platform.queues import QUEUE_NAMES
from core.platform.services import services
from jobs import context
from jobs.schedule import run_forever
from jobs.worker import run as run_worker


@click.command("worker")
@click.option("--burst", is_flag=True, help="Work until the queues are empty, then exit.")
@click.option("--queues", "queue_names", default="", help="Comma-separated queue names (default: all).")
@click.option("--max-jobs", type=WholeNumberRange(min=1), default=None,
              help="Exit after this many jobs, for a supervisor to restart (bounds what in-process jobs leak).")
def worker(burst: bool, queue_names: str, max_jobs: int | None) -> None:
    """Run an RQ worker with the app context and RQ's scheduler (for retries with back-off)."""
    svc = services()
    context.bind(current_app._get_current_object())
    names = [n.strip() for n in queue_names.split(",") if n.strip()]
    unknown = sorted(set(names) - set(QUEUE_NAMES))
    if unknown:
        raise click.ClickException(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUE_NAMES)}")
    try:
        svc.redis.ping()
    except Exception as exc:
        raise click.ClickException(f"cannot reach Redis at {svc.settings.redis_url}: {first_line(exc)}") from None
    _warm_up()
    # Outlives Redis outages and restarts: only a signal (or --burst / --max-jobs) ends it.
    # RQ logs two lines per job at INFO (every 5 s for outbox delivery alone): only at DEBUG.
    level = "DEBUG" if svc.settings.log_level == "DEBUG" else "WARNING"
    run_worker(svc, names, burst=burst, max_jobs=max_jobs, logging_level=level)


def _warm_up() -> None:
    """Configure the ORM mappers and run the dialect's first-connect setup once, up front: jobs
    run in this process reuse them, and forked work horses (media) inherit the mappers (they open
    their own connections; see app._after_fork_in_child)."""
    configure_mappers()
    try:
        with db.engine.connect():
            pass
    except Exception as exc:
        raise click.ClickException(f"cannot reach the database: {first_line(exc)}") from None


@click.command("scheduler")
def scheduler() -> None:
    """Enqueue the periodic jobs (jobs/schedule.py) on their intervals, forever."""
    svc = services()
    try:
        svc.redis.ping()
    except Exception as exc:
        raise click.ClickException(f"cannot reach Redis at {svc.settings.redis_url}: {first_line(exc)}") from None
    click.echo("scheduler running; Ctrl-C stops it")
    run_forever(svc.queues)
