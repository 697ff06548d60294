"""The admins' daily digest: what needs them, counted from the tables, one message per admin per
UTC day (key `digest:<date>:<admin id>`), and none on a day when nothing needs them."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import func, select

from core.notifications.messages import add
from core.platform.db import db, utcnow
from core.platform.models import AuditEvent, EvidenceFile, KajabiEvent, OutboxRecord, User

WINDOW = timedelta(hours=24)


def counts(now: datetime | None = None) -> dict:
    """{infected, unscannable, integrity_mismatches} over the last 24 hours, {dead_letters,
    unmatched} as they stand, and unmatched_oldest_hours (None when there is no backlog).
    Integrity mismatches are audit events whose action names one (`...integrity_mismatch`)."""
    now = now or utcnow()
    since = now - WINDOW

    def files(state: str) -> int:
        return db.session.scalar(select(func.count()).select_from(EvidenceFile)
                                 .where(EvidenceFile.scan_state == state, EvidenceFile.scanned_at >= since)) or 0

    oldest = db.session.scalar(select(func.min(KajabiEvent.received_at)).where(KajabiEvent.state == "queued_unmatched"))
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=timezone.utc)
    return {
        "infected": files("infected"),
        "unscannable": files("unscannable"),
        "integrity_mismatches": db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action.like("%integrity_mismatch%"), AuditEvent.created_at >= since)) or 0,
        "dead_letters": db.session.scalar(select(func.count()).select_from(OutboxRecord)
                                          .where(OutboxRecord.status == "dead")) or 0,
        "unmatched": db.session.scalar(select(func.count()).select_from(KajabiEvent)
                                       .where(KajabiEvent.state == "queued_unmatched")) or 0,
        "unmatched_oldest_hours": round((now - oldest).total_seconds() / 3600, 1) if oldest else None,
    }


def needs_attention(figures: dict) -> bool:
    return any(figures[k] for k in ("infected", "unscannable", "integrity_mismatches", "dead_letters", "unmatched"))


def queue_digests(day: date | None = None, now: datetime | None = None) -> list[int]:
    """One digest row per active admin who has not opted out, committed; their delivery jobs
    follow the commit. Returns the row ids ([] when nothing needs an admin today)."""
    now = now or utcnow()
    day = day or now.date()
    figures = counts(now)
    if not needs_attention(figures):
        db.session.rollback()
        return []
    admins = db.session.scalars(select(User).where(User.role == "admin", User.active.is_(True),
                                                   User.notify_email.is_(True)).order_by(User.id)).all()
    ids = [add("digest", f"digest:{day.isoformat()}:{admin.id}", admin.id, {"day": day.isoformat(), **figures})
           for admin in admins]
    db.session.commit()
    return ids
