"""Parameter types shared by the commands."""
from __future__ import annotations

import click

from core.platform.numbers import parse_whole


class WholeNumberRange(click.IntRange):
    """click.IntRange that takes ASCII digits only. click's INT is Python's int(), which also reads
    other scripts' digits (`--days ٥` was 5) and `1_000`: a usage error (exit 2) instead, as is a
    number longer than any column holds (core.platform.numbers)."""

    name = "integer range"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and (value != value.strip() or parse_whole(value) is None):
            shown = value if len(value) <= 40 else value[:40] + "..."
            self.fail(f"{shown!r} is not a whole number in ASCII digits (at most 19 of them).", param, ctx)
        return super().convert(value, param, ctx)
