"""ledger.record and the approval flow on PostgreSQL: outbox rows, duplicates, caps, revocation,
badges, the log line."""
from __future__ import annotations

import logging
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import func, select

from core.points import catalogue, ledger
from core.review import approvals
from core.accounts.users import create_user
from core.platform.db import db
from core.platform.errors import Conflict, ValidationError
from core.platform.models import AuditEvent, LedgerEntry, OutboxRecord, Submission, UserBadge

NOW = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)


@pytest.fixture
def ctx(app):
    with app.app_context():
        catalogue.seed_catalogue()
        db.session.commit()
        yield app


def _user(email="u@example.com", role="uploader") -> int:
    user, _ = create_user(email, role)
    db.session.commit()
    return user.id


def _submission(user_id: int, activity: str, counters=None, status="in_review", day=date(2024, 4, 30)) -> int:
    sub = Submission(user_id=user_id, activity_code=activity, status=status, session_date=day, counters=counters or {})
    db.session.add(sub)
    db.session.commit()
    return sub.id


def test_every_ledger_row_has_its_outbox_row(ctx):
    uid = _user()
    ledger.record(uid, "LEARN", "kajabi", "kajabi:tag:c1:elevate-ai-1-completed", NOW, tag="elevate-ai-1-completed")
    ledger.record(uid, "LEARN", "kajabi", "kajabi:tag:c1:elevate-ai-2-completed", NOW, tag="elevate-ai-2-completed")
    ledger.record(uid, "EXPLORE", "submission", "submission:1:approved:v1", NOW)
    db.session.commit()
    rows = db.session.scalars(select(LedgerEntry)).all()
    keys = {o.idempotency_key: o for o in db.session.scalars(select(OutboxRecord))}
    for row in rows:
        record = keys[f"ledger:{row.external_source}:{row.external_event_id}"]
        assert record.ledger_id == row.id and record.topic == "ledger.recorded" and record.status == "pending"
        assert record.payload["delta_points"] == row.delta_points
    assert {"badge:%d:STARTER" % uid, "badge:%d:IN_CLASS_INNOVATOR" % uid} <= set(keys)
    assert set(db.session.scalars(select(UserBadge.badge_code))) == {"STARTER", "IN_CLASS_INNOVATOR"}


def test_duplicate_is_duplicate_event_and_leaves_the_transaction_usable(ctx):
    uid = _user()
    ledger.record(uid, "EXPLORE", "submission", "e-1", NOW)
    with pytest.raises(Conflict) as err:
        ledger.record(uid, "EXPLORE", "submission", "e-1", NOW)
    assert err.value.code == "duplicate_event" and err.value.status == 409
    ledger.record(uid, "PRESENT", "submission", "e-2", NOW)  # same transaction carries on
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 2
    assert ledger.user_totals(uid) == {"total": 70, "by_activity": {"EXPLORE": 50, "PRESENT": 20}}


def test_capped_event_is_kept_with_zero_points(ctx):
    uid = _user()
    codes = [ledger.record(uid, "LEARN", "backfill", f"b{i}", NOW).code for i in range(3)]
    db.session.commit()
    assert codes == ["awarded", "awarded", "cap_reached"]
    third = ledger.find("backfill", "b2")
    assert third.delta_points == 0 and third.code == "cap_reached"
    assert ledger.user_totals(uid)["total"] == 20


def test_revoke_writes_a_compensating_row_and_keeps_badges(ctx):
    uid = _user()
    first = ledger.record(uid, "EXPLORE", "submission", "s-1", NOW)
    db.session.commit()
    revoked = ledger.revoke(first.entry.id, "mistake", "admin@example.com")
    db.session.commit()
    assert revoked.delta_points == -50 and revoked.entry.reverses_id == first.entry.id and revoked.code == "revoked"
    assert ledger.user_totals(uid)["total"] == 0
    assert db.session.get(LedgerEntry, first.entry.id).delta_points == 50  # never updated
    assert set(db.session.scalars(select(UserBadge.badge_code))) == {"IN_CLASS_INNOVATOR"}
    with pytest.raises(Conflict):
        ledger.revoke(first.entry.id, "again", "admin@example.com")
    db.session.rollback()
    # The revoked award freed the "once": a new approval earns again.
    assert ledger.record(uid, "EXPLORE", "submission", "s-2", NOW).delta_points == 50


def test_correction_is_its_own_row(ctx):
    uid = _user()
    ledger.correct(uid, "PRESENT", 5, "manual bonus", "admin", external_event_id="fix-1")
    db.session.commit()
    assert ledger.user_totals(uid)["total"] == 5
    with pytest.raises(ValidationError):
        ledger.correct(uid, "PRESENT", 5, "", "admin", external_event_id="fix-2")


def test_log_line_fields(ctx, caplog):
    from core.platform.logs import request_id_var

    uid = _user()
    token = request_id_var.set("req-abc")  # what the request hooks set for a real request
    try:
        with caplog.at_level(logging.INFO, logger="ledger"):
            ledger.record(uid, "LEARN", "kajabi", "kajabi:tag:c9:elevate-ai-1-completed", NOW, tag="elevate-ai-1-completed")
            ledger.record(uid, "LEARN", "kajabi", "kajabi:tag:c9:elevate-ai-2-completed", NOW, tag="elevate-ai-2-completed")
    finally:
        request_id_var.reset(token)
    db.session.commit()
    lines = [r for r in caplog.records if r.name == "ledger"]
    assert len(lines) == 2
    last = lines[-1]
    assert last.event == "ledger.recorded" and last.user_id == uid and last.activity_code == "LEARN"
    assert last.external_event_id == "kajabi:tag:c9:elevate-ai-2-completed"
    assert last.delta_points == 10 and last.badge_codes == ["STARTER"] and lines[0].badge_codes == []
    assert last.request_id == "req-abc" and last.job_id is None


def test_approve_writes_status_ledger_and_audit_in_one_go(ctx):
    uid, rid = _user(), _user("r@example.com", "reviewer")
    sid = _submission(uid, "AMPLIFY", {"peers": 30, "students": 10})
    result = approvals.approve_submission(sid, rid, reason="good")
    db.session.commit()
    assert result.delta_points == 70 and result.code == "awarded"
    sub = db.session.get(Submission, sid)
    assert sub.status == "approved" and sub.decided_by_id == rid
    assert ledger.find("submission", f"submission:{sid}:approved:v1").delta_points == 70
    assert db.session.scalar(select(AuditEvent.action).where(AuditEvent.subject_id == str(sid))) == "submission.approved"
    with pytest.raises(Conflict) as err:
        approvals.approve_submission(sid, rid)
    assert err.value.code == "already_decided"
    db.session.rollback()
    revoked = approvals.revoke_submission(sid, rid, "evidence was not theirs")
    db.session.commit()
    assert revoked.delta_points == -70 and db.session.get(Submission, sid).status == "revoked"
    assert ledger.find("submission", f"submission:{sid}:revoked:v1").reverses_id == result.ledger_entry.id


def test_reject_needs_a_reason_and_adds_no_points(ctx):
    uid, rid = _user(), _user("r@example.com", "reviewer")
    sid = _submission(uid, "EXPLORE")
    with pytest.raises(ValidationError) as err:
        approvals.reject_submission(sid, rid, "  ")
    assert err.value.code == "reason_required"
    approvals.reject_submission(sid, rid, "blurry photo")
    db.session.commit()
    assert db.session.get(Submission, sid).status == "rejected"
    sid2 = _submission(uid, "EXPLORE")
    approvals.request_changes(sid2, rid, "add the date")
    db.session.commit()
    assert db.session.get(Submission, sid2).status == "changes_requested"
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 0


def test_second_approved_explore_is_capped(ctx):
    uid, rid = _user(), _user("r@example.com", "reviewer")
    first = approvals.approve_submission(_submission(uid, "EXPLORE"), rid)
    second = approvals.approve_submission(_submission(uid, "EXPLORE"), rid)
    db.session.commit()
    assert (first.delta_points, first.badge_codes) == (50, ["IN_CLASS_INNOVATOR"])
    assert (second.delta_points, second.code, second.badge_codes) == (0, "cap_reached", [])
