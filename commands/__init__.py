"""`flask ...` commands. Each group lives in its own module; every failure exits non-zero with
one line saying why (click.ClickException)."""
from flask import Flask


def register_commands(app: Flask) -> None:
    from commands import backfill, demo, kajabi, outbox, retention, rollups, users, worker

    for group in (users.cli, demo.cli, kajabi.cli, outbox.cli, rollups.cli, backfill.cli, retention.cli):
        app.cli.add_command(group)
    app.cli.add_command(worker.worker)
    app.cli.add_command(worker.scheduler)
