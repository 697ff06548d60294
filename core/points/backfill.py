"""Backfills: plan (a dry-run diff) -> verify (re-check against the database, show a sample) ->
apply (through ledger.record, tagged with the backfill_id). Runs are rows in `runs`.

The plan simulates the whole file in order against the ledger as it is, with the same pure
rules the ledger uses, so "capped" in the plan means what it will mean when applied. Verify
re-simulates and refuses when any item's outcome moved (the plan is stale: plan again).
"""
from __future__ import annotations

import csv
import io
import json
import random
import secrets
from collections.abc import Callable
from datetime import date, datetime, timezone

from sqlalchemy import func, select

from core.accounts.users import normalise_email
from core.points import ledger, rules
from core.platform.numbers import parse_whole
from core.platform.db import db, utcnow
from core.platform.errors import Conflict, NotFound, ValidationError
from core.platform.models import Activity, LedgerEntry, Run, User

SOURCE = "backfill"
FIELDS = ("email", "activity_code", "event_id", "event_time")
OUTCOMES = ("add", "duplicate", "capped", "unmatched", "invalid")
COMMIT_EVERY = 200


def read_items(path: str) -> list[dict]:
    """CSV (header row; extra integer columns are counters) or JSON lines."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if path.lower().endswith(".csv") or not text.lstrip().startswith("{"):
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    rows.append({"_error": f"line {n} is not JSON"})
    return [_normalise(row, n) for n, row in enumerate(rows, start=1)]


def _normalise(row: object, line: int) -> dict:
    """One input row as {line, email, activity_code, event_id, event_time, session_date, counters,
    error}; anything unreadable is the row's `error` (the dry run lists it), never an exception."""
    if not isinstance(row, dict):  # a JSON line that is a list, a string, a number
        row = {"_error": f"line {line} is not an object"}
    counters, error = {}, row.get("_error")
    given = row.get("counters") if isinstance(row.get("counters"), dict) else {}
    for key, value in given.items():
        number = parse_whole(value if isinstance(value, (int, str)) else None)
        if number is None:
            error = error or f"counter {key!s:.40} is not a whole number"
            continue
        counters[str(key)] = number
    for key, value in row.items():  # other columns holding a whole number are counters too
        if key not in FIELDS and key not in ("counters", "session_date", "_error") \
                and (number := parse_whole(str(value))) is not None:
            counters[str(key)] = number

    def text(name: str) -> str:
        value = row.get(name)
        return value.strip() if isinstance(value, str) else ""

    return {"line": line, "email": normalise_email(text("email")), "activity_code": text("activity_code"),
            "event_id": str(row.get("event_id") or "").strip(), "event_time": text("event_time"),
            "session_date": text("session_date") or None, "counters": counters, "error": error}


def _event_time(value: str) -> datetime:
    """ISO 8601 (naive means UTC). Raises ValueError for a date outside rules.event_time_ok."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    if not rules.event_time_ok(parsed, utcnow()):
        raise ValueError(f"event_time {value!r} is before 2000 or more than a day ahead")
    return parsed


def _session_date(item: dict) -> date | None:
    return date.fromisoformat(item["session_date"]) if item.get("session_date") else None


def simulate(items: list[dict], progress: Callable[[int], None] | None = None) -> list[dict]:
    """Each item's outcome against the database now, earlier items of the file included."""
    specs: dict[str, rules.ActivitySpec] = {
        a.code: rules.ActivitySpec.from_values(a.code, a.points, a.cap_points, a.cap_period, a.counters)
        for a in db.session.scalars(select(Activity))}
    emails = {i["email"] for i in items if i["email"]}
    users = dict(db.session.execute(select(func.lower(User.email), User.id).where(func.lower(User.email).in_(emails))).all()) if emails else {}
    event_ids = [i["event_id"] for i in items if i["event_id"]]
    known = set(db.session.scalars(select(LedgerEntry.external_event_id).where(
        LedgerEntry.external_source == SOURCE, LedgerEntry.external_event_id.in_(event_ids)))) if event_ids else set()
    facts: dict[tuple[int, str], list[rules.PriorFact]] = {}
    outcomes = []
    for item in items:
        outcomes.append(_outcome(item, specs, users, known, facts))
        if progress:
            progress(1)
    return outcomes


def _outcome(item: dict, specs: dict, users: dict, known: set, facts: dict) -> dict:
    """One item's outcome; `known` (event ids) and `facts` (per user and activity) carry what the
    items before it would have written."""
    result = {"line": item["line"], "event_id": item["event_id"], "email": item["email"],
              "activity_code": item["activity_code"], "user_id": users.get(item["email"]), "delta_points": 0}
    try:
        if item.get("error") or not all(item.get(f) for f in FIELDS):
            raise ValueError(item.get("error") or "missing " + ", ".join(f for f in FIELDS if not item.get(f)))
        _event_time(item["event_time"])  # validates; the value is parsed again when applied
        session_date = _session_date(item)
        spec = specs.get(item["activity_code"])
        if spec is None:
            raise ValueError(f"unknown activity {item['activity_code']}")
        if spec.cap_period == "rolling_7d" and session_date is None:
            raise ValueError("session_date required")
    except ValueError as exc:
        return {**result, "outcome": "invalid", "reason": str(exc)}
    if result["user_id"] is None:
        return {**result, "outcome": "unmatched", "reason": "unmatched_contact"}
    if item["event_id"] in known:
        return {**result, "outcome": "duplicate", "reason": "duplicate_event"}
    known.add(item["event_id"])
    key = (result["user_id"], spec.code)
    if key not in facts:
        facts[key] = ledger.prior_facts(*key)
    award = rules.compute_award(spec, facts[key], rules.NewEvent(item["counters"], session_date))
    facts[key].append(rules.PriorFact(award.delta_points, award.counted, session_date))
    return {**result, "outcome": "add" if award.code == rules.AWARDED else "capped",
            "delta_points": award.delta_points, "reason": award.code}


def _counts(outcomes: list[dict]) -> dict:
    counts = {name: 0 for name in OUTCOMES}
    for o in outcomes:
        counts[o["outcome"]] += 1
    counts["items"] = len(outcomes)
    counts["points"] = sum(o["delta_points"] for o in outcomes)
    return counts


def plan(path: str, started_by: str | None = None, *, items: list[dict] | None = None,
         progress: Callable[[int], None] | None = None) -> Run:
    """Dry run: no ledger row is written; the run keeps the items and their planned outcomes.
    `items` spares a second read when the caller already has read_items(path) (for a progress bar)."""
    items = read_items(path) if items is None else items
    if not items:
        raise ValidationError("backfill_empty", f"{path} has no items.")
    outcomes = simulate(items, progress)
    backfill_id = f"bf-{utcnow():%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    run = Run(kind="backfill", backfill_id=backfill_id, status="planned", started_by=started_by,
              params={"file": path}, counts=_counts(outcomes),
              items=[{**item, "plan": outcome} for item, outcome in zip(items, outcomes)])
    db.session.add(run)
    db.session.commit()
    return run


def load(backfill_id: str) -> Run:
    run = db.session.scalar(select(Run).where(Run.kind == "backfill", Run.backfill_id == backfill_id))
    if run is None:
        raise NotFound("backfill_not_found", f"There is no backfill {backfill_id}.")
    return run


def verify(backfill_id: str, sample: int, rng: random.Random | None = None,
           progress: Callable[[int], None] | None = None) -> tuple[Run, list[dict]]:
    """Re-check the plan against the database now; returns a random sample for a person to read.
    Raises Conflict("plan_stale") when any outcome moved since planning."""
    run = load(backfill_id)
    if run.status not in ("planned", "verified"):
        raise Conflict("backfill_state", f"Backfill {backfill_id} is {run.status}; only a planned one can be verified.")
    items = list(run.items)
    now = simulate(items, progress)
    moved = [(item, fresh) for item, fresh in zip(items, now)
             if (item["plan"]["outcome"], item["plan"]["delta_points"]) != (fresh["outcome"], fresh["delta_points"])]
    if moved:
        raise Conflict("plan_stale", f"{len(moved)} of {len(items)} items would now differ from the plan "
                       f"(first: line {moved[0][0]['line']}); plan again.")
    chosen = (rng or random).sample(range(len(items)), min(max(sample, 0), len(items)))
    shown = [{**items[i]["plan"], "counters": items[i]["counters"], "event_time": items[i]["event_time"]} for i in sorted(chosen)]
    run.status = "verified"
    run.params = {**(run.params or {}), "verified_at": utcnow().isoformat(), "sample": len(shown)}
    db.session.commit()
    return run, shown


def apply(backfill_id: str, progress: Callable[[int], None] | None = None) -> Run:
    """Write the planned items through ledger.record. Re-running skips what is already there."""
    run = load(backfill_id)
    if run.status not in ("verified", "applied"):
        raise Conflict("backfill_state", f"Backfill {backfill_id} is {run.status}; verify it before applying.")
    items = list(run.items)
    users = dict(db.session.execute(select(func.lower(User.email), User.id)).all())
    counts = {"added": 0, "capped": 0, "duplicate": 0, "skipped": 0, "points": 0}
    for n, item in enumerate(items, start=1):
        user_id = users.get(item["email"])
        if item["plan"]["outcome"] not in ("add", "capped") or user_id is None:
            counts["skipped"] += 1
        else:
            try:
                result = ledger.record(user_id, item["activity_code"], SOURCE, item["event_id"], _event_time(item["event_time"]),
                                       counters=item["counters"] or None, session_date=_session_date(item),
                                       meta={"backfill_id": backfill_id, "line": item["line"]})
                counts["added" if result.code == rules.AWARDED else "capped"] += 1
                counts["points"] += result.delta_points
            except Conflict as exc:
                if exc.code != "duplicate_event":
                    raise
                counts["duplicate"] += 1
        if n % COMMIT_EVERY == 0:
            db.session.commit()
        if progress:
            progress(1)
    run = load(backfill_id)
    run.status = "applied"
    run.counts = {**(run.counts or {}), "applied": counts}
    run.finished_at = utcnow()
    db.session.commit()
    return run
