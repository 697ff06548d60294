"""Kicks: enqueue a job after the commit, with at most one pending per name.

A burst of commits (500 ledger writes a second, a batch of new users) needs one run of the job
that follows them, not one each. The check runs at commit time, so a rolled-back transaction
never leaves a marker behind; the job clears the marker when it *starts*, so any commit after
that start kicks again and nothing is left waiting. The marker's TTL covers a job lost with a
dead worker; the periodic schedule is the backstop.
"""
from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.orm import Session

from core.db import db

log = logging.getLogger(__name__)
_INFO_KEY = "points_kicks"
PENDING_TTL_S = 60


def marker_key(prefix: str, name: str) -> str:
    return f"{prefix}kick:{name}:pending"


def kick_after_commit(name: str, queue: str, func: str, *args) -> None:
    """The first kick of a name in a transaction wins (its args are kept)."""
    from core.services import services

    db.session.info.setdefault(_INFO_KEY, {}).setdefault(name, (services(), queue, func, args))


def clear(name: str) -> None:
    """Called by the kicked job as it starts."""
    from core.services import services

    svc = services()
    svc.redis.delete(marker_key(svc.settings.queue_prefix, name))


@event.listens_for(Session, "after_commit")
def _kick(session: Session) -> None:
    for name, (svc, queue, func, args) in session.info.pop(_INFO_KEY, {}).items():
        try:
            if svc.redis.set(marker_key(svc.settings.queue_prefix, name), 1, nx=True, ex=PENDING_TTL_S):
                svc.queues.enqueue(queue, func, *args)
        except Exception:  # Redis down: the schedule runs the job later
            log.warning("kick failed", extra={"kick": name})


@event.listens_for(Session, "after_soft_rollback")
def _drop(session: Session, previous_transaction) -> None:
    session.info.pop(_INFO_KEY, None)
