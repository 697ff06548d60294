"""Audit events: who did what to which thing. Written in the caller's transaction."""
from __future__ import annotations

import hashlib

from core.platform.db import db
from core.platform.logs import request_id_var
from core.platform.models import AuditEvent


SUBJECT_ID_MAX = 64  # audit_events.subject_id


def subject_key(subject_id) -> str:
    """The stored subject id: the id itself, or for one longer than the column (a 200-character
    Kajabi tag) its first 55 characters and a hash of the whole, so it stays unique and findable."""
    text = str(subject_id)
    if len(text) <= SUBJECT_ID_MAX:
        return text
    return f"{text[:55]}~{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def record(action: str, subject_type: str, subject_id, *, actor_id: int | None = None, **details) -> AuditEvent:
    """Add one audit event to the caller's transaction. A subject id longer than the column is
    stored as subject_key(...) with the whole id in details["subject"]."""
    key = subject_key(subject_id)
    if key != str(subject_id):
        details = {**details, "subject": str(subject_id)}
    event = AuditEvent(action=action, subject_type=subject_type, subject_id=key, actor_id=actor_id,
                       details=details, request_id=request_id_var.get())
    db.session.add(event)
    return event


def trail(subject_type: str, subject_id) -> list[AuditEvent]:
    return (db.session.query(AuditEvent)
            .filter_by(subject_type=subject_type, subject_id=subject_key(subject_id))
            .order_by(AuditEvent.created_at, AuditEvent.id).all())
