"""`flask ...` commands. Each group lives in its own module; every failure exits non-zero with
one line saying why (click.ClickException), including failures no command foresaw: a database or
Redis that cannot be reached would otherwise print a traceback (see `one_line_failures`)."""
from __future__ import annotations

from flask import Flask

from commands import backfill, demo, kajabi, outbox, retention, rollups, slo, users, worker
from commands.failures import one_line_failures


def register_commands(app: Flask) -> None:
    for command in (users.cli, demo.cli, kajabi.cli, outbox.cli, rollups.cli, backfill.cli, retention.cli, slo.cli,
                    worker.worker, worker.scheduler):
        app.cli.add_command(one_line_failures(command))
