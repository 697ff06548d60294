"""GET /api/stats: points by activity for a period; cacheable by CDNs, ETag, 304."""
from __future__ import annotations

from flask import Response, request

from api.blueprint import bp
from api.schemas.common import validate_query
from api.schemas.stats import StatsQuery
from core.points import stats


@bp.get("/stats")
def get_stats():
    body = stats.cached_body(validate_query(StatsQuery, request.args, "invalid_period").period)
    etag = stats.etag_for(body)
    headers = {"Cache-Control": stats.CACHE_CONTROL, "ETag": etag}
    if _matches(request.headers.get("If-None-Match", ""), etag):
        return Response(status=304, headers=headers)
    return Response(body, status=200, mimetype="application/json", headers=headers)


def _matches(header: str, etag: str) -> bool:
    candidates = [c.strip() for c in header.split(",") if c.strip()]
    # Weak comparison is what If-None-Match uses (RFC 9110), so W/"x" matches "x".
    return "*" in candidates or any(c.removeprefix("W/") == etag for c in candidates)
