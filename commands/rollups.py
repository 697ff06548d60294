"""flask rollups rebuild [--since DATE]."""
from __future__ import annotations

from datetime import date

import click
from flask.cli import AppGroup

from commands.failures import reason
from core.points import rollups

cli = AppGroup("rollups", help="Daily rollups behind /api/stats.")


@cli.command("rebuild")
@click.option("--since", help="First day (YYYY-MM-DD) to rebuild; default: all days.")
def rebuild(since: str | None) -> None:
    """Recompute daily rollups from the ledger."""
    try:
        first = date.fromisoformat(since) if since else None
    except ValueError:
        raise click.ClickException(f"--since {since!r} is not a date (YYYY-MM-DD)") from None
    try:
        days = rollups.touched_days(None)
        days = {d for d in days if first is None or d >= first}
        with click.progressbar(length=len(days), label="rebuilding") as bar:
            written = rollups.rebuild(first, progress=bar.update)
    except Exception as exc:
        raise click.ClickException(f"rebuild failed: {reason(exc)}") from None
    click.echo(f"{written} rollup row(s) over {len(days)} day(s)")
