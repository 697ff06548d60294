"""The checks of a submission's own fields (activity, session date, counters, note, city, how
many files), shared by new submissions, added files and corrections. Each appends one
{field, issue} per problem to `problems` instead of raising, so a form shows every problem at once.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone

from core.platform.db import db
from core.platform.models import Activity
from core.platform.numbers import parse_whole

MAX_FILES = 10
MAX_NOTE_CHARS = 2000
MAX_CITY_CHARS = 120
MAX_AGE_DAYS = 365


def _check_activity(code: str, problems: list[dict]) -> Activity | None:
    activity = db.session.get(Activity, code) if isinstance(code, str) and code else None
    if activity is None:
        problems.append({"field": "activity_code", "issue": "Choose an activity from the list."})
    elif not activity.active:
        problems.append({"field": "activity_code", "issue": f"{activity.name} is not open for submissions."})
    elif activity.source != "evidence":
        problems.append({"field": "activity_code",
                         "issue": f"{activity.name} is awarded automatically and takes no evidence."})
    else:
        return activity
    return None


def _check_session_date(value: date | str, problems: list[dict]) -> date | None:
    day = value if isinstance(value, date) and not isinstance(value, datetime) else None
    if day is None and isinstance(value, str):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            day = None
    if day is None:
        problems.append({"field": "session_date", "issue": "Enter the session date as YYYY-MM-DD."})
        return None
    # One day of slack: a user east of UTC is already on "tomorrow" while the server is not.
    today = datetime.now(timezone.utc).date()
    if day > today + timedelta(days=1):
        problems.append({"field": "session_date", "issue": "The session date cannot be in the future."})
    elif day < today - timedelta(days=MAX_AGE_DAYS):
        problems.append({"field": "session_date",
                         "issue": f"The session must have taken place within the last {MAX_AGE_DAYS} days."})
    return day


def _check_counters(activity: Activity | None, given: Mapping, problems: list[dict]) -> dict:
    if activity is None:
        return {}
    specs = {c["name"]: c for c in (activity.counters or [])}
    out: dict[str, int] = {}
    for name in given:
        if name not in specs:
            problems.append({"field": f"counters.{name}", "issue": f"{activity.name} has no field called {name!r}."})
    for name, spec in specs.items():
        raw = given.get(name, 0)
        label = spec.get("label", name)
        low, high = int(spec.get("min", 0)), int(spec.get("max", 10**6))
        value = _whole_number(raw)
        if value is None or not low <= value <= high:
            problems.append({"field": f"counters.{name}",
                             "issue": f"{label} must be a whole number from {low} to {high}."})
            continue
        out[name] = value
    if specs and len(out) == len(specs) and not any(out.values()):
        # Points come from these counts (AMPLIFY: 2 per peer, 1 per student); all zero is a form
        # left blank, not evidence of anything, and would only ever earn 0.
        first = next(iter(specs))
        labels = " or ".join(spec.get("label", name) for name, spec in specs.items())
        problems.append({"field": f"counters.{first}", "issue": f"Give at least one count above 0 ({labels})."})
    return out


def _whole_number(raw: object) -> int | None:
    """A count as typed: blank is 0; otherwise ASCII digits (core.platform.numbers), at most 9 of
    them so a huge number is refused before int() spends time on it."""
    if raw in ("", None):
        return 0
    if isinstance(raw, str) and len(raw.strip()) > 9:
        return None
    return parse_whole(raw)


def _check_text(name: str, value: str | None, limit: int, problems: list[dict]) -> str:
    text = (value or "").strip()
    if len(text) > limit:
        problems.append({"field": name, "issue": f"Keep this under {limit} characters (it has {len(text)})."})
    return text


def _check_file_count(new: int, existing: int, problems: list[dict]) -> None:
    if new == 0:
        problems.append({"field": "files", "issue": "Attach at least one file."})
    elif new + existing > MAX_FILES:
        problems.append({"field": "files", "issue": f"Attach at most {MAX_FILES} files to one submission."})
