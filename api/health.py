"""Liveness and readiness. /readyz reports each dependency so an operator sees which one failed."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from core.db import db
from core.services import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


def _probe(fn) -> dict:
    try:
        detail = fn()
        return {"ok": True, **({"detail": detail} if detail else {})}
    except Exception as exc:  # report, don't raise: readiness must answer
        message = getattr(exc, "message", None) or exc.__class__.__name__
        return {"ok": False, "error": str(message)[:200]}


@bp.get("/readyz")
def readyz():
    svc = services()
    checks = {
        "database": _probe(lambda: db.session.execute(text("SELECT 1")).scalar() and None),
        "redis": _probe(lambda: svc.redis.ping() and None),
        "storage": _probe(lambda: svc.storage.check() or svc.settings.storage_backend),
        "scanner": _probe(lambda: svc.scanner.check() or type(svc.scanner).__name__),
    }
    ok = all(c["ok"] for c in checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), (200 if ok else 503)
