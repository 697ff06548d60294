"""JSON-lines logging. Every line carries request_id or job_id when there is one."""
from __future__ import annotations

import contextvars
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

# Set by the request hooks and by the job wrapper; read by the filter below.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        if not hasattr(record, "job_id"):
            record.job_id = job_id_var.get()
        return True


def configure_logging(level: str = "INFO", stream=None) -> None:
    """Idempotent: called by every create_app; replaces only the handler it installed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_points_json", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._points_json = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                       rename_fields={"levelname": "level", "asctime": "ts"}))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # werkzeug's own access log would duplicate our one line per request.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def current_request_or_job() -> dict:
    return {"request_id": request_id_var.get(), "job_id": job_id_var.get()}
