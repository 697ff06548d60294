"""flask outbox replay [--since ISO] [--topic T], with a progress bar on stderr."""
from __future__ import annotations

import sys
from datetime import datetime, timezone

import click
from flask.cli import AppGroup

from commands.failures import reason
from core.delivery import outbox, sink_keys

cli = AppGroup("outbox", help="The transactional outbox.")


def _parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.ClickException(f"--since {value!r} is not an ISO date or date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@cli.command("replay")
@click.option("--since", help="Only records created at or after this ISO date-time (UTC if no zone).")
@click.option("--topic", help="Only this topic, e.g. ledger.recorded or badge.awarded.")
def replay(since: str | None, topic: str | None) -> None:
    """Reset records to pending so the worker delivers them again; sinks skip keys they applied.
    Only records from the last 90 days (the replay horizon), whatever --since says."""
    moment = _parse_since(since)
    if topic is not None:
        try:
            valid = outbox.known_topics()
        except Exception as exc:
            raise click.ClickException(f"replay failed: {reason(exc)}") from None
        if topic not in valid:
            raise click.ClickException(f"unknown topic {topic!r}; valid topics: {', '.join(valid)}")
    horizon = sink_keys.replay_horizon()
    if moment is None or moment < horizon:
        # The sinks' records of older keys may be trimmed; such records are never reset.
        click.echo(f"replaying records created since {horizon.isoformat(timespec='seconds')} "
                   f"(the {sink_keys.REPLAY_HORIZON_DAYS}-day replay horizon)", err=True)
    try:
        ids = outbox.replay_range(since=moment, topic=topic)
        with click.progressbar(length=ids[1] - ids[0] + 1 if ids else 0, label="replaying", file=sys.stderr) as bar:
            count = outbox.replay(since=moment, topic=topic, progress=bar.update, id_range=ids) if ids else 0
    except Exception as exc:
        raise click.ClickException(f"replay failed: {reason(exc)}") from None
    click.echo(f"{count} outbox record(s) reset to pending")
