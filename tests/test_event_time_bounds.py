"""Event times from outside are bounded: a Kajabi hook (or a backfill row) that says it happened
before 2000 or more than a day from now is refused at the door, and one already stored is
counted at its receive time. An outside test found a year-9999 hook that made every daily
rollup overflow, so /api/stats stopped counting for good."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from core.points import kajabi, rollups, rules
from core.platform.db import db, utcnow
from core.platform.models import DailyRollup, KajabiEvent, LedgerEntry
from tests.test_kajabi import burst, documented, events, kapp, post  # noqa: F401  (fixture)


def flat(created_at: str, event_id: str = "fut-1") -> dict:
    return {"event_id": event_id, "created_at": created_at, "contact": {"id": "c-100", "email": "known@example.com"},
            "tag": {"name": "elevate-ai-1-completed"}}


@pytest.mark.parametrize("created_at", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
                                        "1999-12-31T23:59:59Z"])
def test_a_hook_dated_outside_the_bounds_is_refused_naming_created_at(kapp, created_at):
    response = post(kapp.test_client(), flat(created_at))
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "invalid_payload" and body["details"][0]["field"] == "created_at"
    assert events(kapp) == []  # nothing stored


def test_the_bounds_themselves():
    now = datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert rules.event_time_ok(rules.EARLIEST_EVENT_TIME, now)
    assert rules.event_time_ok(now + timedelta(hours=23), now)
    assert not rules.event_time_ok(now + timedelta(days=2), now)
    assert not rules.event_time_ok(datetime(1999, 12, 31, tzinfo=timezone.utc), now)


def test_a_hook_of_tomorrow_within_the_clock_skew_is_accepted(kapp):
    soon = (utcnow() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert post(kapp.test_client(), flat(soon)).status_code == 202


def test_a_stored_event_with_an_impossible_date_counts_at_its_receive_time_and_rollups_go_on(kapp):
    # As if stored before the door refused such dates: the ledger row takes the receive time.
    with kapp.app_context():
        stored = KajabiEvent(event_id="old-fut", event_type="tag_added", payload=flat("9999-12-31T23:59:59Z"),
                             contact_id="c-100", email="known@example.com", tag="elevate-ai-1-completed",
                             state="received", received_at=utcnow())
        db.session.add(stored)
        db.session.commit()
        kajabi.process(stored.id)  # what the drain does for each received event
        db.session.commit()
        [row] = db.session.scalars(select(LedgerEntry)).all()
        assert row.event_time.year == utcnow().year and row.delta_points == 10
        # A year-9999 ledger row already written before the fix: rollups still refresh every day.
        db.session.add(LedgerEntry(user_id=row.user_id, activity_code="LEARN", external_source="test",
                                   external_event_id="far-future", event_time=datetime(9999, 12, 31, 12, tzinfo=timezone.utc),
                                   delta_points=1, code="awarded"))
        db.session.commit()
        assert rollups.refresh(rollups.touched_days(None)) >= 2
        db.session.commit()
        days = {r.day for r in db.session.scalars(select(DailyRollup))}
        assert date(9999, 12, 31) in days and utcnow().date() in days
