"""Liveness and readiness. /readyz reports each dependency so an operator sees which one failed.
It answers anyone (load balancers), so a failure shows only a code; the message, which can name
hosts and ports, goes to the log with the request id."""
from __future__ import annotations

from flask import Blueprint, jsonify

from core.monitoring import readiness
from core.platform.services import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    checks = readiness.checks(services())
    ok = all(c["ok"] for c in checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), (200 if ok else 503)
