"""The app a job runs in. `flask worker` binds the app it was started with; a worker started
some other way (plain `rq worker`) builds one from the environment, once per process."""
from __future__ import annotations

import contextlib
import logging
import time

from rq.timeouts import JobTimeoutException

from core.logs import job_id_var

log = logging.getLogger("job")
_app = None


def bind(app) -> None:
    global _app
    _app = app


def get_app():
    global _app
    if _app is None:
        from app import create_app

        _app = create_app()
    return _app


@contextlib.contextmanager
def job_context():
    """App context, the job id on every log line, and one closing line per job (like requests)."""
    from rq import get_current_job

    job = get_current_job()
    token = job_id_var.set(job.id if job else None)
    started = time.perf_counter()
    outcome = "failed"
    try:
        with get_app().app_context():
            try:
                yield
            except JobTimeoutException:
                # The alarm can land mid-statement, leaving the connection busy: close it now,
                # rather than when garbage collection finds it still checked out of the pool.
                from core.db import db

                db.session.invalidate()
                raise
        outcome = "finished"
    finally:
        log.info("job", extra={"func": job.func_name if job else None, "outcome": outcome,
                               "duration_ms": round((time.perf_counter() - started) * 1000, 2)})
        job_id_var.reset(token)
