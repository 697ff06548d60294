"""Whole numbers from outside (forms, query strings, files, settings, the command line), written in
ASCII digits only.

Python reads more than ASCII: "²".isdigit() is True but int("²") raises (a 500 where a form
filtered ids with isdigit()), int("٥") is 5 and int("1_000") is 1000. Ids must also fit
PostgreSQL's bigint, or the query fails instead of finding nothing. And int() refuses a string of
more than 4300 digits with a ValueError of its own (CPython's limit), which callers did not expect:
no number this service keeps has more than 19 digits (bigint), so longer ones are not numbers here.
"""
from __future__ import annotations

import re

WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
BIGINT_MAX = 2**63 - 1
MAX_DIGITS = 19  # len(str(BIGINT_MAX)); a longer number fits no column here


def parse_id(raw: object) -> int | None:
    """A database id, 1..BIGINT_MAX, written as ASCII digits (no sign, no spaces); else None."""
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS:
        value = int(raw)
        return value if 1 <= value <= BIGINT_MAX else None
    return None


def parse_whole(raw: object) -> int | None:
    """`raw` as a whole number (an optional sign, at most MAX_DIGITS ASCII digits, spaces around
    allowed); else None. Range checks are the caller's: this only says whether it is a number."""
    if isinstance(raw, bool):  # True is an int in Python, never a count
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and (text := raw.strip()) and len(text.lstrip("+-")) <= MAX_DIGITS \
            and WHOLE_NUMBER.fullmatch(text):
        return int(text)
    return None
