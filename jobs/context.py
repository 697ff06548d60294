"""The app a job runs in. `flask worker` binds the app it was started with (and a forked work
horse inherits it). Jobs never build an app themselves: that would make this door import the app
factory, which imports every door (an import circle)."""
from __future__ import annotations

import contextlib
import logging
import time

from psycopg.pq import TransactionStatus

from core.platform.logs import job_id_var

log = logging.getLogger("job")
_ACTIVE = TransactionStatus.ACTIVE  # psycopg: a statement is still running
_app = None


def bind(app) -> None:
    global _app
    _app = app


def get_app():
    if _app is None:
        raise RuntimeError("no app bound for jobs: run workers with `flask worker`, which binds one")
    return _app


def _release_connection() -> None:
    """After a failed job. A timeout (SIGALRM) can land mid-statement and leave the connection
    busy: then cancel the statement on the server and close the connection, rather than hand a
    busy connection back to the pool. Otherwise a plain rollback."""
    from core.platform.db import db

    session = db.session()
    raw = None
    if session.in_transaction():
        try:
            raw = session.connection().connection.dbapi_connection
        except Exception:  # noqa: BLE001 - best effort: then there is nothing to cancel
            raw = None
    busy = raw is not None and getattr(getattr(raw, "info", None), "transaction_status", None) == _ACTIVE
    if not busy:
        try:
            session.rollback()
        except Exception:  # noqa: BLE001 - e.g. the database went away; the job's own error matters more
            log.warning("rollback after a failed job failed; closing the connection", exc_info=True)
            session.invalidate()
        return
    try:
        raw.cancel_safe(timeout=2)
    except Exception:  # noqa: BLE001 - closing the connection below is what matters
        log.warning("could not cancel the interrupted statement", exc_info=True)
    session.invalidate()


@contextlib.contextmanager
def job_context():
    """App context, the job id on every log line, and one closing line per job (like requests).
    A failed job's connection is released here (a statement RQ's timeout interrupted is cancelled
    first, so nothing tries a rollback on a busy connection), and the app context's teardown
    removes the session: job functions need no cleanup of their own."""
    from rq import get_current_job

    job = get_current_job()
    token = job_id_var.set(job.id if job else None)
    started = time.perf_counter()
    outcome = "failed"
    try:
        with get_app().app_context():
            try:
                yield
            except BaseException:
                try:
                    _release_connection()
                except Exception:  # noqa: BLE001 - never hide the job's own error
                    log.warning("could not release the failed job's connection", exc_info=True)
                raise
        outcome = "finished"
    finally:
        # A finished job is routine (periodic ones run every few seconds): DEBUG; a failure: WARNING.
        log.log(logging.DEBUG if outcome == "finished" else logging.WARNING, "job",
                extra={"func": job.func_name if job else None, "outcome": outcome,
                       "duration_ms": round((time.perf_counter() - started) * 1000, 2)})
        job_id_var.reset(token)
