"""POST /api/webhooks/kajabi: verify, validate against the documented shapes (api.schemas.kajabi),
store the raw event once, queue its processing. A refused body stores nothing."""
from __future__ import annotations

from flask import jsonify, request

from api.blueprint import bp
from api.json_body import read_json, read_limited, require_json
from api.schemas.kajabi import parse_body
from core.points import kajabi
from core.platform.errors import Unavailable
from core.platform.services import settings


@bp.post("/webhooks/kajabi")
def kajabi_webhook():
    secret = settings().kajabi_webhook_secret
    if not secret:  # refuse everything, before reading a byte, until a secret is configured
        raise Unavailable("not_configured", "Kajabi webhooks are not configured on this server.")
    raw = read_limited(request, kajabi.MAX_BODY_BYTES)  # 413 past 64 KiB, with or without Content-Length
    kajabi.verify(secret, raw, request.args.get("token"), request.headers.get("X-Webhook-Secret"),
                  request.headers.get("X-Kajabi-Signature"))
    require_json(request)  # 415 for a form or text body, after the secret so strangers learn nothing
    body = read_json(raw)  # strict: UTF-8, standard JSON, bounded depth, storable strings
    parsed = parse_body(body, raw)  # one of the two documented shapes, or 400 naming each field
    row_id, created = kajabi.store(parsed, body, raw)  # committed
    if not created:
        return jsonify(event_id=parsed.event_id, status="duplicate"), 200
    # One pending process_event job drains every received event (see jobs.kajabi), so a burst
    # of hooks costs a few jobs, not one per event; a drain that is already running clears the
    # marker as it starts, so a second worker joins it on the next hook.
    kajabi.kick_drain(row_id)
    return jsonify(event_id=parsed.event_id, status="queued"), 202
