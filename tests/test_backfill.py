"""Backfill plan -> verify -> apply, through the real commands, and the other CLI groups of
the ledger (kajabi reconcile, outbox replay, rollups rebuild)."""
from __future__ import annotations

import json
import re

from sqlalchemy import func, select

from core.points import catalogue, ledger
from core.accounts.users import create_user
from core.platform.db import db, utcnow
from core.platform.models import LedgerEntry, Run


def _setup(app, tmp_path, fmt="jsonl"):
    with app.app_context():
        catalogue.seed_catalogue()
        uid = create_user("bf@example.com", "uploader")[0].id
        ledger.record(uid, "LEARN", "backfill", "pre-existing", utcnow())
        db.session.commit()
    rows = [
        {"email": "BF@example.com", "activity_code": "LEARN", "event_id": "e1", "event_time": "2024-01-05T10:00:00Z"},
        {"email": "bf@example.com", "activity_code": "LEARN", "event_id": "e2", "event_time": "2024-01-06T10:00:00Z"},
        {"email": "bf@example.com", "activity_code": "LEARN", "event_id": "pre-existing", "event_time": "2024-01-06T10:00:00Z"},
        {"email": "nobody@example.com", "activity_code": "EXPLORE", "event_id": "e3", "event_time": "2024-01-07T10:00:00Z"},
        {"email": "bf@example.com", "activity_code": "AMPLIFY", "event_id": "e4", "event_time": "2024-01-08T10:00:00Z",
         "session_date": "2024-01-08", "peers": 10, "students": 5},
        {"email": "bf@example.com", "activity_code": "NOPE", "event_id": "e5", "event_time": "2024-01-08T10:00:00Z"},
    ]
    path = tmp_path / f"items.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
        header = ["email", "activity_code", "event_id", "event_time", "session_date", "peers", "students"]
        path.write_text("\n".join([",".join(header)] + [",".join(str(r.get(h, "")) for h in header) for r in rows]) + "\n")
    return uid, str(path)


def _ledger_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(LedgerEntry))


def test_plan_verify_apply_and_apply_again(app, tmp_path):
    uid, path = _setup(app, tmp_path)
    cli = app.test_cli_runner()
    before = _ledger_count(app)
    planned = cli.invoke(args=["backfill", "plan", path])
    assert planned.exit_code == 0, planned.output
    assert "items=6 add=2 duplicate=1 capped=1 unmatched=1 invalid=1 points=35" in planned.stdout
    assert "planning" in planned.stderr  # the progress bar (a terminal shows it filling)
    assert _ledger_count(app) == before  # a dry run writes no ledger row
    backfill_id = re.search(r"backfill_id: (\S+)", planned.output).group(1)

    refused = cli.invoke(args=["backfill", "apply", backfill_id])
    assert refused.exit_code != 0 and "verify it before applying" in refused.output

    verified = cli.invoke(args=["backfill", "verify", backfill_id, "--sample", "3"])
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.count("  line ") == 3 and "verified" in verified.stdout and "checking" in verified.stderr

    applied = cli.invoke(args=["backfill", "apply", backfill_id])
    assert applied.exit_code == 0, applied.output
    assert "added=2 capped=1 duplicate=0 skipped=3 points=35" in applied.output
    with app.app_context():
        rows = db.session.scalars(select(LedgerEntry).where(LedgerEntry.meta["backfill_id"].as_string() == backfill_id)).all()
        assert {r.external_event_id for r in rows} == {"e2", "e4", "e1"}
        assert all(r.external_source == "backfill" for r in rows)
        assert ledger.user_totals(uid)["total"] == 20 + 25
        run = db.session.scalar(select(Run).where(Run.backfill_id == backfill_id))
        assert run.status == "applied" and run.counts["applied"]["added"] == 2

    after = _ledger_count(app)
    again = cli.invoke(args=["backfill", "apply", backfill_id])
    assert again.exit_code == 0 and "added=0 capped=0 duplicate=3" in again.output
    assert _ledger_count(app) == after


def test_csv_plan_and_stale_plan_is_refused(app, tmp_path):
    uid, path = _setup(app, tmp_path, fmt="csv")
    cli = app.test_cli_runner()
    planned = cli.invoke(args=["backfill", "plan", path])
    assert "items=6 add=2 duplicate=1 capped=1 unmatched=1 invalid=1 points=35" in planned.output, planned.output
    backfill_id = re.search(r"backfill_id: (\S+)", planned.output).group(1)
    with app.app_context():  # the database moves: LEARN is now full, the plan's "add" is stale
        ledger.record(uid, "LEARN", "kajabi", "kajabi:tag:x:elevate-ai-1-completed", utcnow(), tag="elevate-ai-1-completed")
        db.session.commit()
    stale = cli.invoke(args=["backfill", "verify", backfill_id, "--sample", "2"])
    assert stale.exit_code != 0 and "plan again" in stale.output
    assert [line for line in stale.stderr.splitlines() if line.startswith("Error:")] == [
        "Error: 1 of 6 items would now differ from the plan (first: line 1); plan again."]  # one-line reason
    assert "Traceback" not in stale.output
    missing = cli.invoke(args=["backfill", "verify", "bf-nope", "--sample", "1"])
    assert missing.exit_code != 0 and "no backfill" in missing.output


def test_other_ledger_commands(app, tmp_path):
    cli = app.test_cli_runner()
    for group, command in (("kajabi", "reconcile"), ("outbox", "replay"), ("rollups", "rebuild"), ("backfill", "plan")):
        assert cli.invoke(args=[group, command, "--help"]).exit_code == 0
    uid, _ = _setup(app, tmp_path)
    result = cli.invoke(args=["outbox", "replay", "--since", "2000-01-01", "--topic", "ledger.recorded"])
    assert result.exit_code == 0 and "1 outbox record(s) reset" in result.output
    bad = cli.invoke(args=["outbox", "replay", "--since", "yesterday"])
    assert bad.exit_code != 0 and "not an ISO" in bad.output
    rebuilt = cli.invoke(args=["rollups", "rebuild", "--since", "2000-01-01"])
    assert rebuilt.exit_code == 0 and "1 rollup row(s) over 1 day(s)" in rebuilt.output
    assert cli.invoke(args=["rollups", "rebuild", "--since", "nope"]).exit_code != 0
    reconciled = cli.invoke(args=["kajabi", "reconcile"])
    assert reconciled.exit_code == 0 and "nothing to do" in reconciled.output


def test_plan_and_verify_report_progress_once_per_item(app, tmp_path):
    _, path = _setup(app, tmp_path)
    from core.points import backfill

    with app.app_context():
        planned: list[int] = []
        run = backfill.plan(path, progress=planned.append)
        checked: list[int] = []
        backfill.verify(run.backfill_id, 1, progress=checked.append)
    assert sum(planned) == sum(checked) == 6  # the six items of the file, each counted once


def test_odd_lines_and_counters_are_invalid_items_not_a_crash(app, tmp_path):
    """A JSON line that is not an object, or a counter that is not a whole number in ASCII digits
    ("²", "٥", "1_0", a list), is one invalid item the plan counts; before, the first made the
    command fail and "²" raised in int()."""
    _uid, path = _setup(app, tmp_path)
    base = {"email": "bf@example.com", "activity_code": "AMPLIFY", "session_date": "2024-01-08",
            "event_time": "2024-01-08T10:00:00Z"}
    odd = ['[1, 2]', '"just text"', '42', 'null',
           json.dumps({**base, "event_id": "c1", "counters": {"peers": "²"}}),
           json.dumps({**base, "event_id": "c2", "counters": {"peers": "٥"}}),
           json.dumps({**base, "event_id": "c3", "counters": {"peers": [3]}}),
           json.dumps({**base, "event_id": "c4", "counters": {"peers": "1_0"}})]
    with open(path, "a") as fh:
        fh.write("\n".join(odd) + "\n")
    planned = app.test_cli_runner().invoke(args=["backfill", "plan", path])
    assert planned.exit_code == 0, planned.output
    assert "items=14 add=2 duplicate=1 capped=1 unmatched=1 invalid=9 points=35" in planned.stdout
