"""flask kajabi reconcile."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from commands.failures import reason
from core.points import kajabi

cli = AppGroup("kajabi", help="Kajabi webhook events.")


@cli.command("reconcile")
def reconcile() -> None:
    """Retry events whose contact matched no user (and newly mapped tags)."""
    try:
        waiting = len(kajabi.reconcile_candidates())
        with click.progressbar(length=waiting, label="reconciling") as bar:
            counts = kajabi.reconcile(progress=bar.update)
    except Exception as exc:
        raise click.ClickException(f"reconcile failed: {reason(exc)}") from None
    click.echo("reconciled: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing to do"))
    if counts.get("failed"):
        raise click.ClickException(f"{counts['failed']} event(s) failed; see the log")
