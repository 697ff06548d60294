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


def checks(svc) -> dict[str, dict]:
    """{"database"|"redis"|"storage"|"scanner": {"ok", "detail"|"error"}} for services `svc`."""
    return {
        "database": _probe("database", lambda: db.session.execute(text("SELECT 1")).scalar() and None),
        "redis": _probe("redis", lambda: svc.redis.ping() and None),
        "storage": _probe("storage", lambda: svc.storage.check() or svc.settings.storage_backend),
        "scanner": _probe("scanner", lambda: svc.scanner.check() or type(svc.scanner).__name__),
    }
