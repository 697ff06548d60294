"""flask slo backfill [--days 28] | flask slo verify [--window 28d]."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from commands.failures import reason
from commands.params import WholeNumberRange
from core.monitoring import slo, windows
from core.points import latency_hist

cli = AppGroup("slo", help="The pre-aggregated Kajabi figures behind /api/slo and /metrics.")


@cli.command("backfill")
@click.option("--days", type=WholeNumberRange(1, latency_hist.KEEP_FINE.days - 1), default=29, show_default=True,
              help="How many days of receipt to recount, back from the current hour.")
@click.option("--skip-counts", is_flag=True, help="Leave the per-state counts as they are.")
def backfill(days: int, skip_counts: bool) -> None:
    """Recount the latency histogram from the events, an hour at a time (each hour's rows are
    replaced, so running it again is safe), then the per-state counts. Run once after upgrading
    to 0010_slo_hist; ledgering goes on meanwhile (each hour briefly holds the drains' upserts)."""
    hours = latency_hist.hours_to_rebuild(days)
    try:
        with click.progressbar(length=len(hours), label=f"recounting {len(hours)} hours", show_pos=True) as bar:
            counted = latency_hist.rebuild(hours, progress=bar.update)
        states = {} if skip_counts else latency_hist.rebuild_state_counts()
        latency_hist.vacuum_analyze()
    except Exception as exc:
        raise click.ClickException(f"backfill failed: {reason(exc)}") from None
    click.echo(f"{counted:,} ledgered event(s) counted over {len(hours)} hour(s)"
               + ("" if skip_counts else "; per state: " + (", ".join(f"{s}={n:,}" for s, n in sorted(states.items())) or "none")))


def _window(ctx, param, value: str):
    try:
        return windows.parse_window(value)[1]
    except Exception as exc:  # ValidationError: a usage error (exit 2), as backfill's --days
        raise click.BadParameter(reason(exc)) from None


@cli.command("verify")
@click.option("--window", "span", default="28d", show_default=True, callback=_window,
              help="As /api/slo?window=: 5m to 28d.")
def verify(span) -> None:
    """Compare the histogram's figure with the one computed from every event of the window
    (slow at millions of events). Exits 1 when they differ beyond the stated error, 2 on a bad
    --window."""
    try:
        fast, exact, problems = slo.differences(window=span)
    except Exception as exc:
        raise click.ClickException(f"verify failed: {reason(exc)}") from None
    for key in ("events", "within_60s", "ratio", "p50_seconds", "p95_seconds", "p99_seconds"):
        click.echo(f"{key:<12} histogram {fast[key]!s:>12}   events {exact[key]!s:>12}")
    if problems:
        differing = ", ".join(problem.split(":")[0] for problem in problems)
        raise click.ClickException(f"the histogram differs from the events in {differing} (run `flask slo backfill`)")
    click.echo("the same, within the stated error")
