"""Whole numbers from outside (forms, query strings, files, settings, the command line), written in
ASCII digits only.

Python reads more than ASCII: "²".isdigit() is True but int("²") raises (a 500 where a form
filtered ids with isdigit()), int("٥") is 5 and int("1_000") is 1000. Ids must also fit
PostgreSQL's bigint, or the query fails instead of finding nothing.
"""
from __future__ import annotations

import re

WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
BIGINT_MAX = 2**63 - 1


def parse_id(raw: object) -> int | None:
    """A database id, 1..BIGINT_MAX, written as ASCII digits (no sign, no spaces); else None."""
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:
        value = int(raw)
        return value if 1 <= value <= BIGINT_MAX else None
    return None


def parse_whole(raw: object) -> int | None:
    """`raw` as a whole number (an optional sign, ASCII digits, spaces around allowed); else None."""
    if isinstance(raw, bool):  # True is an int in Python, never a count
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and WHOLE_NUMBER.fullmatch(raw.strip()):
        return int(raw.strip())
    return None
