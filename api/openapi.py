"""GET /api/openapi.json: an OpenAPI 3.1 document of every /api route, with error examples.

Written by hand as data, next to the routes it describes; tests/test_openapi.py fails when a
route exists that this document does not describe, so the two cannot drift apart.
"""
from __future__ import annotations

from flask import jsonify

from api.blueprint import bp


def _error(type_: str, code: str, message: str, details: list | None = None) -> dict:
    return {"value": {"type": type_, "code": code, "message": message, "details": details or []}}


EXAMPLES = {
    "cap_reached": _error("conflict", "cap_reached", "The LEARN cap of 20 points is reached; the event is kept with 0 points.",
                          [{"field": "activity_code", "issue": "LEARN capped at 20"}]),
    "duplicate_event": _error("conflict", "duplicate_event", "This event was already recorded.",
                              [{"field": "external_event_id", "issue": "kajabi:tag:123:elevate-ai-1-completed"}]),
    "unmatched_contact": _error("conflict", "unmatched_contact", "No user matches this Kajabi contact yet; the event is queued.",
                                [{"field": "contact.email", "issue": "no user with this e-mail"}]),
    "file_type_not_allowed": _error("validation_error", "file_type_not_allowed", "Only PDF, JPEG, PNG and CSV files are accepted.",
                                    [{"field": "files[0]", "issue": "detected application/x-dosexec"}]),
    "invalid_parameter": _error("validation_error", "invalid_parameter", "days must be a whole number of at least 1.",
                                [{"field": "days", "issue": "not an integer"}]),
    "payload_too_large": _error("validation_error", "payload_too_large", "The request is larger than this service accepts."),
    "unauthenticated": _error("auth_error", "unauthenticated", "Sign in to continue."),
    "forbidden": _error("auth_error", "invalid_token", "A valid bearer token is required."),
    "not_found": _error("not_found", "not_found", "The requested URL was not found on the server."),
    "not_configured": _error("unavailable", "not_configured", "CRON_SECRET is not set, so this endpoint is off."),
    "file_not_ready": _error("conflict", "file_not_ready", "This file is still being scanned for viruses."),
    "file_not_scanned": _error("conflict", "file_not_scanned", "This file was uploaded while virus scanning was off and has not been scanned yet."),
    "thumbnail_not_ready": _error("conflict", "thumbnail_not_ready", "The thumbnail is still being made. Try again in a minute."),
    "file_infected": _error("not_found", "file_infected", "This file contained malware (Eicar-Test-Signature) and was deleted."),
    "file_deleted": _error("not_found", "file_deleted", "This file was deleted under the retention policy."),
    "internal": _error("internal", "internal_error", "Something went wrong on our side. Quote request id 3f2a... when reporting it."),
    "database_timeout": _error("unavailable", "database_timeout",
                               "The database took too long to answer; nothing was saved. Try again shortly. (request id 3f2a...)"),
}

STATUS_EXAMPLES = {
    "400": ["invalid_parameter", "file_type_not_allowed"],
    "401": ["unauthenticated"],
    "403": ["forbidden"],
    "404": ["not_found"],
    "409": ["duplicate_event", "cap_reached", "unmatched_contact", "file_not_ready", "file_not_scanned",
            "thumbnail_not_ready"],
    "410": ["file_infected", "file_deleted"],
    "413": ["payload_too_large"],
    "500": ["internal"],
    "503": ["not_configured"],
}


def _errors(*statuses: str) -> dict:
    """Every operation may also answer 500, and 503 when a statement passes DB_STATEMENT_TIMEOUT_MS
    or the database is down (with Retry-After)."""
    out = {}
    for status in dict.fromkeys(statuses + ("500", "503")):
        names = STATUS_EXAMPLES[status] if status in statuses or status == "500" else []
        names = names + (["database_timeout"] if status == "503" else [])
        out[status] = {
            "description": "Error envelope",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"},
                                             "examples": {name: EXAMPLES[name] for name in names}}},
        }
    return out


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _int_param(name: str, where: str = "query", description: str = "", **schema) -> dict:
    return {"name": name, "in": where, "required": where == "path", "description": description,
            "schema": {"type": "integer", **schema}}


FILE_ID = _int_param("file_id", "path", "Evidence file id")
BEARER = [{"bearer": []}]
SESSION = [{"session": []}]
OBJ = {"type": "object"}


def document() -> dict:
    signed = {"type": "object", "required": ["url", "expires_at", "ttl"],
              "properties": {"url": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"},
                             "ttl": {"type": "integer", "maximum": 3600}}}
    paths = {
        "/api/webhooks/kajabi": {"post": {
            "summary": "Kajabi tag webhook", "tags": ["kajabi"],
            "description": "Secret as ?token=, X-Webhook-Secret, or X-Kajabi-Signature (HMAC-SHA256 hex of the body). "
                           "Bodies over 64 KiB are refused. Nothing is written for a rejected call.",
            "parameters": [{"name": "token", "in": "query", "required": False, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": OBJ}}},
            "responses": {"202": _json("Stored and queued", {"type": "object", "properties": {
                "event_id": {"type": "string"}, "status": {"type": "string"}}}),
                "200": _json("The same event again", {"type": "object", "properties": {"status": {"const": "duplicate"}}}),
                **_errors("400", "403", "413", "503")}}},
        "/api/stats": {"get": {
            "summary": "Aggregate points by activity and period", "tags": ["stats"],
            "description": "Cache-Control: public, s-maxage=1800, stale-while-revalidate=60; ETag; 304 on If-None-Match.",
            "parameters": [{"name": "period", "in": "query", "schema": {"type": "string", "enum": ["day", "week", "month", "all"]}}],
            "responses": {"200": _json("Aggregates", OBJ), "304": {"description": "Not modified"}, **_errors("400")}}},
        "/api/cron/enforce-retention": {"get": {
            "summary": "Enqueue one retention batch", "tags": ["cron"], "security": BEARER,
            "parameters": [_int_param("days", description="Retention in days", minimum=1),
                           _int_param("limit", description="Users per batch", minimum=1, maximum=1000),
                           _int_param("offset", description="Users to skip", minimum=0)],
            "responses": {"202": _json("Batch enqueued", {"type": "object", "properties": {
                "job_id": {"type": "string"}, "cutoff": {"type": "string", "format": "date-time"},
                "offset": {"type": "integer"}, "limit": {"type": "integer"}, "users_in_batch": {"type": "integer"},
                "next_offset": {"type": ["integer", "null"]}}}), **_errors("400", "401", "403", "503")}}},
        "/api/cron/jobs/{job_id}": {"get": {
            "summary": "A cron job's state and counts", "tags": ["cron"], "security": BEARER,
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json("Job state", OBJ), **_errors("401", "403", "404", "503")}}},
        "/api/slo": {"get": {
            "summary": "SLO summary (ENABLE_INTERNAL_ENDPOINTS=1 and INTERNAL_METRICS_TOKEN)", "tags": ["internal"],
            "security": BEARER,
            "parameters": [{"name": "window", "in": "query", "description": "How far back the tag -> ledger figure looks: "
                            "<number><m|h|d> from 5m to 28d; default 24h",
                            "schema": {"type": "string", "pattern": "^[0-9]{1,5}[mhd]$", "default": "24h"}}],
            "responses": {"200": _json("kajabi_to_ledger, queued_unmatched, outbox, scans", OBJ), **_errors("400", "403", "404")}}},
        "/api/files/{file_id}": {"get": {
            "summary": "Download evidence as an attachment (302 to a presigned link, or streamed)", "tags": ["files"],
            "security": SESSION, "parameters": [FILE_ID],
            "responses": {"200": {"description": "The file, Content-Disposition: attachment",
                                  "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                          "302": {"description": "Redirect to a presigned link (at most 3600 s)"},
                          **_errors("401", "404", "409", "410")}}},
        "/api/files/{file_id}/signed-url": {"get": {
            "summary": "A short-lived download link", "tags": ["files"], "security": SESSION,
            "parameters": [FILE_ID, _int_param("ttl", description="Seconds; clamped to 3600", minimum=1)],
            "responses": {"200": _json("Link", signed), **_errors("400", "401", "404", "409", "410")}}},
        "/api/files/{file_id}/thumbnail": {"get": {
            "summary": "The EXIF-free thumbnail of a clean image", "tags": ["files"], "security": SESSION,
            "parameters": [FILE_ID],
            "responses": {"200": {"description": "JPEG", "content": {"image/jpeg": {}}}, **_errors("401", "404", "409", "410")}}},
        "/api/files/signed-urls": {"post": {
            "summary": "Many short-lived links at once", "tags": ["files"], "security": SESSION,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["file_ids"],
                            "properties": {"file_ids": {"type": "array", "items": {"type": "integer"}, "maxItems": 100},
                                           "ttl": {"type": "integer"}}}}}},
            "responses": {"200": _json("Links and per-file errors", {"type": "object", "properties": {
                "urls": {"type": "array", "items": OBJ}, "errors": {"type": "array", "items": OBJ}}}),
                **_errors("400", "401")}}},
        "/api/storage/local": {"get": {
            "summary": "Serve an app-signed link of the local storage backend", "tags": ["files"],
            "parameters": [{"name": n, "in": "query", "required": True, "schema": {"type": "string"}}
                           for n in ("key", "exp", "fn", "sig")],
            "responses": {"200": {"description": "The file as an attachment"}, **_errors("403", "404")}}},
        "/api/openapi.json": {"get": {
            "summary": "This document", "tags": ["meta"], "responses": {"200": _json("OpenAPI 3.1", OBJ)}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Points programme API", "version": "1.0.0",
                 "description": "Every error is the envelope {type, code, message, details}. See docs/errors.md."},
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["type", "code", "message", "details"], "properties": {
                "type": {"type": "string", "enum": ["validation_error", "auth_error", "not_found", "conflict",
                                                    "rate_limited", "unavailable", "internal"]},
                "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object", "properties": {
                    "field": {"type": "string"}, "issue": {"type": "string"}}}}}}},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "CRON_SECRET or INTERNAL_METRICS_TOKEN"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session", "description": "Portal sign-in"}},
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
