"""Parameter types shared by the commands."""
from __future__ import annotations

import click

from core.platform.numbers import WHOLE_NUMBER


class WholeNumberRange(click.IntRange):
    """click.IntRange that takes ASCII digits only. click's INT is Python's int(), which also reads
    other scripts' digits (`--days ٥` was 5) and `1_000`: a usage error (exit 2) instead."""

    name = "integer range"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not WHOLE_NUMBER.fullmatch(value):
            self.fail(f"{value!r} is not a whole number in ASCII digits.", param, ctx)
        return super().convert(value, param, ctx)
