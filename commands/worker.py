"""flask worker [--burst] and flask scheduler."""
from __future__ import annotations

import click
from flask import current_app
from rq import Worker
from sqlalchemy.orm import configure_mappers

from core.db import db

from core.services import services
from jobs import context
from jobs.schedule import run_forever


@click.command("worker")
@click.option("--burst", is_flag=True, help="Work until the queues are empty, then exit.")
@click.option("--queues", "queue_names", default="", help="Comma-separated queue names (default: all).")
def worker(burst: bool, queue_names: str) -> None:
    """Run an RQ worker with the app context and RQ's scheduler (for retries with back-off)."""
    svc = services()
    context.bind(current_app._get_current_object())
    queues = [svc.queues[n.strip()] for n in queue_names.split(",") if n.strip()] or svc.queues.all()
    try:
        svc.redis.ping()
    except Exception as exc:
        raise click.ClickException(f"cannot reach Redis at {svc.settings.redis_url}: {exc}") from None
    _warm_up()
    Worker(queues, connection=svc.redis).work(burst=burst, with_scheduler=True, logging_level="INFO")


def _warm_up() -> None:
    """Do once, before RQ forks a work horse per job, what every job would otherwise redo:
    configure the ORM mappers and run the dialect's first-connect setup (the forked child opens
    its own connections; see app._after_fork_in_child)."""
    configure_mappers()
    try:
        with db.engine.connect():
            pass
    except Exception as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from None


@click.command("scheduler")
def scheduler() -> None:
    """Enqueue the periodic jobs (jobs/schedule.py) on their intervals, forever."""
    svc = services()
    try:
        svc.redis.ping()
    except Exception as exc:
        raise click.ClickException(f"cannot reach Redis at {svc.settings.redis_url}: {exc}") from None
    click.echo("scheduler running; Ctrl-C stops it")
    run_forever(svc.queues)
