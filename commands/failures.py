"""One line and exit status 1 for every command failure (see commands/__init__.py)."""

from __future__ import annotations

import functools

import click
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from core.platform.errors import DomainError


def reason(exc: Exception) -> str:
    """The first line of what went wrong, named for the part that failed."""
    if isinstance(exc, DomainError):
        return exc.message
    if isinstance(exc, OperationalError):
        return f"database unavailable: {first_line(exc.orig or exc)}"
    if isinstance(exc, RedisError):
        return f"Redis unavailable: {first_line(exc)}"
    return f"{type(exc).__name__}: {first_line(exc)}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def one_line_failures(command: click.Command) -> click.Command:
    """Wrap every command of a group (or one command) so an unexpected exception ends as one line
    and exit status 1; click's own exits (usage errors, Ctrl-C) pass through unchanged."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            one_line_failures(sub)
        return command
    callback = command.callback
    if callback is None or getattr(callback, "one_line", False):
        return command

    @functools.wraps(callback)
    def run(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the point: one line whatever went wrong
            raise click.ClickException(reason(exc)) from None

    run.one_line = True  # type: ignore[attr-defined]
    command.callback = run
    return command
