"""/api/slo and /metrics: off (404) unless ENABLE_INTERNAL_ENDPOINTS=1, and then only with
INTERNAL_METRICS_TOKEN (Bearer or X-Internal-Metrics-Token), compared in constant time; no token
or a wrong one is 401 with `WWW-Authenticate` (RFC 6750, api.bearer).
With the endpoints on but no token configured they answer 403: fail closed, never open."""
from __future__ import annotations

from functools import wraps

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from api.bearer import require_bearer
from api.blueprint import bp
from api.schemas.common import validate_query
from api.schemas.slo import SloQuery
from core.monitoring import metrics, slo, windows
from core.platform.errors import AuthError, NotFound
from core.platform.services import services

metrics_bp = Blueprint("metrics", __name__)
TOKEN_HEADER = "X-Internal-Metrics-Token"


def internal_only(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        settings = services().settings
        if not settings.enable_internal_endpoints:
            raise NotFound("not_found", "The requested URL was not found on the server.")
        if not settings.internal_metrics_token:
            raise AuthError("not_configured", "INTERNAL_METRICS_TOKEN is not set, so internal endpoints refuse everyone.")
        require_bearer(settings.internal_metrics_token, "INTERNAL_METRICS_TOKEN", TOKEN_HEADER)
        return view(*args, **kwargs)

    return wrapper


@bp.get("/slo")
@internal_only
def slo_summary():
    query = validate_query(SloQuery, request.args)  # an empty window is a bad value, not the default
    label, window = windows.parse_window(query.window)
    svc = services()
    body = slo.summary(svc.redis, svc.settings.unmatched_alert_threshold, key_prefix=svc.settings.queue_prefix,
                       window=window)
    body["kajabi_to_ledger"]["window"] = label
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


@metrics_bp.get("/metrics")
@internal_only
def prometheus_metrics():
    return Response(metrics.render(services()), content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
