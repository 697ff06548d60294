"""The `window` parameter of /api/slo: how far back the tag -> ledger figure looks.

`<whole number><m|h|d>`, from 5m (the burn-rate alerts' shortest window) to 28d (the objective's
own window, as in core.monitoring.slo.WINDOW); the default is 24h. The figure over a window is
the one the alerts use: good = ledgered within 60 s of receipt; bad = ledgered later, or still
waiting past 60 s (deploy/prometheus/recording.yml takes the same ratio from counters).
"""
from __future__ import annotations

import re
from datetime import timedelta

from core.platform.errors import ValidationError

DEFAULT = "24h"
MINIMUM = timedelta(minutes=5)
MAXIMUM = timedelta(days=28)
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
_FORMAT = re.compile(r"([0-9]{1,5})([mhd])")


def parse_window(raw: str | None) -> tuple[str, timedelta]:
    """'30m' -> ('30m', timedelta(minutes=30)); None -> the default. Raises ValidationError
    `invalid_parameter` (400) naming the field `window` for anything else or out of bounds."""
    text = DEFAULT if raw is None else raw
    match = _FORMAT.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValidationError("invalid_parameter", "window must be a whole number of minutes, hours or days, e.g. 30m, 6h, 7d.",
                              [{"field": "window", "issue": "expected <number><m|h|d>"}])
    value = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if not MINIMUM <= value <= MAXIMUM:
        raise ValidationError("invalid_parameter", "window must be between 5m and 28d.",
                              [{"field": "window", "issue": "out of range 5m..28d"}])
    return text, value
