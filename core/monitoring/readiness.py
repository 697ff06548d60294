"""The readiness checks behind /readyz and the `points_ready` gauge, so the alert and the
endpoint a load balancer polls can never disagree.

Each check answers {"ok": True[, "detail"]} or {"ok": False, "error": CODE}; a failure's message,
which can name hosts and ports, goes to the log only.
"""
from __future__ import annotations

import logging

from sqlalchemy import text

from core.platform.db import db
from core.platform.errors import DomainError

log = logging.getLogger("api.health")


def _probe(name: str, fn) -> dict:
    try:
        detail = fn()
        return {"ok": True, **({"detail": detail} if detail else {})}
    except Exception as exc:  # report, don't raise: readiness must answer
        # Our own errors carry a stable code; SQLAlchemy's `.code` is a docs link id, so not those.
        code = exc.code if isinstance(exc, DomainError) else type(exc).__name__
        log.warning("readiness check failed", extra={"check": name, "error": getattr(exc, "message", None) or str(exc)})
        return {"ok": False, "error": code}


def _scanner_warning(svc) -> str | None:
    """A misconfiguration that does not stop the scanner but refuses some uploads: clamd's
    StreamMaxLength below MAX_UPLOAD_MB. A warning, not a failure: smaller files scan fine."""
    probe = getattr(svc.scanner, "stream_limit_warning", None)
    if probe is None:
        return None
    try:
        warning = probe(svc.settings.max_upload_bytes)
    except Exception as exc:  # asking failed: the PING already answered for availability
        log.warning("could not ask clamd for its stream limit", extra={"error": str(exc)})
        return None
    if warning:
        log.warning("scanner misconfigured", extra={"check": "scanner", "warning": warning})
    return warning


def checks(svc, *, warnings: bool = True) -> dict[str, dict]:
    """{"database"|"redis"|"storage"|"scanner": {"ok", "detail"|"error"[, "warning"]}} for
    services `svc`. With `warnings`, a working scanner also reports clamd's StreamMaxLength when
    it is below MAX_UPLOAD_MB (one extra clamd connection)."""
    result = {
        "database": _probe("database", lambda: db.session.execute(text("SELECT 1")).scalar() and None),
        "redis": _probe("redis", lambda: svc.redis.ping() and None),
        "storage": _probe("storage", lambda: svc.storage.check() or svc.settings.storage_backend),
        "scanner": _probe("scanner", lambda: svc.scanner.check() or type(svc.scanner).__name__),
    }
    if warnings and result["scanner"]["ok"]:
        warning = _scanner_warning(svc)
        if warning:
            result["scanner"]["warning"] = warning
    return result
