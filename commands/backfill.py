"""flask backfill plan FILE | verify BACKFILL_ID --sample N | apply BACKFILL_ID."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from commands.failures import reason
from commands.params import WholeNumberRange
from core.points import backfill
from core.platform.errors import DomainError

cli = AppGroup("backfill", help="Supervised backfills: plan (dry run) -> verify (sample) -> apply.")


def _summary(counts: dict) -> str:
    return (f"items={counts.get('items', 0)} add={counts.get('add', 0)} duplicate={counts.get('duplicate', 0)} "
            f"capped={counts.get('capped', 0)} unmatched={counts.get('unmatched', 0)} invalid={counts.get('invalid', 0)} "
            f"points={counts.get('points', 0)}")


@cli.command("plan")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def plan(file: str) -> None:
    """Dry run FILE (CSV or JSON lines of email, activity_code, event_id, event_time, counters...):
    print what would be added, duplicate, capped or unmatched. Writes no ledger row."""
    try:
        items = backfill.read_items(file)
        with click.progressbar(length=len(items), label="planning", file=sys.stderr) as bar:
            run = backfill.plan(file, started_by="cli", items=items, progress=bar.update)
    except (DomainError, OSError, ValueError) as exc:
        raise click.ClickException(f"plan failed: {reason(exc)}") from None
    click.echo(_summary(run.counts))
    for item in run.items:
        if item["plan"]["outcome"] in ("unmatched", "invalid"):
            click.echo(f"  line {item['line']}: {item['plan']['outcome']} ({item['plan'].get('reason')}) {item['email']}")
    click.echo(f"backfill_id: {run.backfill_id}")


@cli.command("verify")
@click.argument("backfill_id")
@click.option("--sample", "sample", type=WholeNumberRange(min=0), default=10, show_default=True,
              help="How many planned items to show for a person to check.")
def verify(backfill_id: str, sample: int) -> None:
    """Re-check a planned backfill against the database now and print a random sample."""
    try:
        with click.progressbar(length=len(backfill.load(backfill_id).items), label="checking",
                               file=sys.stderr) as bar:
            run, shown = backfill.verify(backfill_id, sample, progress=bar.update)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    for item in shown:
        click.echo(f"  line {item['line']}: {item['outcome']:<9} {item['delta_points']:>5} pts  {item['email']} "
                   f"{item['activity_code']} {item['event_id']} {item['event_time']} {item['counters']}")
    click.echo(f"{run.backfill_id} verified ({_summary(run.counts)})")


@cli.command("apply")
@click.argument("backfill_id")
def apply(backfill_id: str) -> None:
    """Apply a verified backfill through the ledger (re-running skips what is already there)."""
    try:
        run = backfill.load(backfill_id)
        with click.progressbar(length=len(run.items), label="applying") as bar:
            run = backfill.apply(backfill_id, progress=bar.update)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    applied = run.counts.get("applied", {})
    click.echo(f"{run.backfill_id} applied: " + " ".join(f"{k}={v}" for k, v in applied.items()))
