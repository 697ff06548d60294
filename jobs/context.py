"""The app a job runs in. `flask worker` binds the app it was started with; a worker started
some other way (plain `rq worker`) builds one from the environment, once per process."""
from __future__ import annotations

import contextlib

from core.logs import job_id_var

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
    """App context plus the job id on every log line; the session is cleaned up afterwards."""
    from rq import get_current_job

    job = get_current_job()
    token = job_id_var.set(job.id if job else None)
    app = get_app()
    try:
        with app.app_context():
            yield app
    finally:
        job_id_var.reset(token)
