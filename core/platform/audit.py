"""Audit events: who did what to which thing. Written in the caller's transaction."""
from __future__ import annotations

from core.platform.db import db
from core.platform.logs import request_id_var
from core.platform.models import AuditEvent


def record(action: str, subject_type: str, subject_id, *, actor_id: int | None = None, **details) -> AuditEvent:
    event = AuditEvent(action=action, subject_type=subject_type, subject_id=str(subject_id), actor_id=actor_id,
                       details=details, request_id=request_id_var.get())
    db.session.add(event)
    return event


def trail(subject_type: str, subject_id) -> list[AuditEvent]:
    return (db.session.query(AuditEvent)
            .filter_by(subject_type=subject_type, subject_id=str(subject_id))
            .order_by(AuditEvent.created_at, AuditEvent.id).all())
