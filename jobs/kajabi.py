"""Kajabi jobs: process one stored event; reconcile the unmatched ones."""
from __future__ import annotations

from core import kajabi, kicks
from core.db import db
from jobs.context import job_context


def process_event(event_row_id: int) -> str | None:
    """Idempotent: an event already final is left alone. Raises on failure so RQ records it."""
    with job_context():
        try:
            state = kajabi.process(event_row_id)
            db.session.commit()
            return state
        except Exception:
            db.session.rollback()
            raise
        finally:
            db.session.remove()


def reconcile() -> dict[str, int]:
    with job_context():
        kicks.clear(kajabi.RECONCILE_KICK)  # before reading: a change from now on kicks again
        try:
            counts = kajabi.reconcile()
            if counts.get("failed"):  # the others are committed; RQ records the failure
                raise RuntimeError(f"kajabi reconcile: {counts['failed']} event(s) failed: {counts}")
            return counts
        finally:
            db.session.remove()
