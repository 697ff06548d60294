"""POST /api/webhooks/kajabi: verify, validate against the documented shapes (api.schemas.kajabi),
store the raw event once, queue its processing. A refused body stores nothing."""
from __future__ import annotations

from flask import jsonify, request

from api.blueprint import bp
from api.json_body import read_json
from api.schemas.kajabi import parse_body
from core.points import kajabi
from core.platform.errors import PayloadTooLarge, Unavailable
from core.platform.services import settings


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge("payload_too_large", f"Webhook bodies are limited to {kajabi.MAX_BODY_BYTES // 1024} KiB.")


@bp.post("/webhooks/kajabi")
def kajabi_webhook():
    secret = settings().kajabi_webhook_secret
    if not secret:  # refuse everything, before reading a byte, until a secret is configured
        raise Unavailable("not_configured", "Kajabi webhooks are not configured on this server.")
    if request.content_length is not None and request.content_length > kajabi.MAX_BODY_BYTES:
        raise _too_large()
    # Read one byte past the limit: a body without (or lying about) Content-Length is still caught.
    raw = request.stream.read(kajabi.MAX_BODY_BYTES + 1)
    if len(raw) > kajabi.MAX_BODY_BYTES:
        raise _too_large()
    kajabi.verify(secret, raw, request.args.get("token"), request.headers.get("X-Webhook-Secret"),
                  request.headers.get("X-Kajabi-Signature"))
    body = read_json(raw)  # strict: UTF-8, standard JSON, bounded depth, storable strings
    parsed = parse_body(body, raw)  # one of the two documented shapes, or 400 naming each field
    row_id, created = kajabi.store(parsed, body)  # committed
    if not created:
        return jsonify(event_id=parsed.event_id, status="duplicate"), 200
    # One pending process_event job drains every received event (see jobs.kajabi), so a burst
    # of hooks costs a few jobs, not one per event; a drain that is already running clears the
    # marker as it starts, so a second worker joins it on the next hook.
    kajabi.kick_drain(row_id)
    return jsonify(event_id=parsed.event_id, status="queued"), 202
