"""flask retention run --days N [--dry-run]: evidence retention inline, with progress."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from commands.failures import reason
from commands.params import WholeNumberRange

cli = AppGroup("retention", help="Evidence retention.")


@cli.command("run")
@click.option("--days", type=WholeNumberRange(1, 36500), default=None,
              help="Delete evidence older than this many days (default EVIDENCE_RETENTION_DAYS).")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; change nothing.")
def run(days: int | None, dry_run: bool) -> None:
    """Delete evidence objects and thumbnails older than the cutoff and mark their rows deleted."""
    from core.platform.db import db
    from core.retention.enforcement import run_all, users_total
    from core.platform.services import services

    days = days or services().settings.evidence_retention_days
    try:
        total = users_total()
        click.echo(f"{'dry run: ' if dry_run else ''}evidence older than {days} days, {total} users")
        with click.progressbar(length=total, label="users", file=sys.stderr) as bar:
            counts = run_all(days, dry_run=dry_run, started_by="cli", progress=bar.update)
    except Exception as exc:
        db.session.rollback()
        raise click.ClickException(f"retention failed: {reason(exc)}") from None
    verb = "would delete" if dry_run else "deleted"
    anonymised = counts.get("kajabi_anonymised")
    click.echo(f"cutoff {counts['cutoff']}; {verb}: {counts['objects_deleted']} files, "
               f"{counts['thumbnails_deleted']} thumbnails; rows marked: {counts['rows_marked']}; "
               f"failures: {counts['failed']}" + ("" if anonymised is None else f"; kajabi payloads anonymised: {anonymised}"))
    if counts["failed"]:
        raise click.ClickException(f"{counts['failed']} objects could not be deleted; run again")
