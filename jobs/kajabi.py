"""Kajabi jobs: process one stored event; reconcile the unmatched ones."""
from __future__ import annotations

import logging
import time

from core import kajabi, kicks
from core.db import db
from jobs.context import job_context

log = logging.getLogger(__name__)

DRAIN_BUDGET_S = 30.0


def process_event(event_row_id: int, drain: bool = True) -> dict[str, int]:
    """Process the event, then every other received one (oldest first) until none are left or the
    time budget is spent; one transaction per event. Idempotent: final events are left alone, and
    events another worker holds are skipped. Raises on failure so RQ records it."""
    with job_context():
        kicks.clear(kajabi.PROCESS_KICK)  # before draining: a hook from now on kicks again
        counts: dict[str, int] = {}
        seen: set[int] = set()
        deadline = time.monotonic() + DRAIN_BUDGET_S
        try:
            batch = [event_row_id]
            while batch:
                for row_id in batch:
                    seen.add(row_id)
                    try:
                        state = kajabi.process(row_id, skip_locked=row_id != event_row_id) or "skipped"
                        db.session.commit()
                    except Exception:  # one bad event must not stop the drain; reconcile retries it
                        db.session.rollback()
                        log.exception("kajabi event failed", extra={"kajabi_event_row": row_id})
                        state = "failed"
                    counts[state] = counts.get(state, 0) + 1
                if not drain or time.monotonic() > deadline:
                    break
                # Events another worker holds (skipped) are left to it.
                batch = [i for i in kajabi.next_received() if i not in seen]
                db.session.commit()
            if counts.get("failed"):
                raise RuntimeError(f"kajabi process_event: {counts['failed']} event(s) failed: {counts}")
            return counts
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
