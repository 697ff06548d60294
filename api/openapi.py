"""GET /api/openapi.json: an OpenAPI 3.1 document of every /api route, with error examples.

Request bodies and parameters are generated from the pydantic models the doors validate with
(api/schemas/), so the document and the server cannot disagree about what is accepted; the rest
is written here as data, next to the routes it describes. tests/test_openapi.py fails when a
route exists that this document does not describe.
"""
from __future__ import annotations

import copy
import functools

from flask import jsonify
from pydantic.json_schema import models_json_schema

from api.blueprint import bp
from api.schemas.common import BIGINT_MAX
from api.schemas.cron import JOB_ID_PATTERN, EnforceRetentionQuery
from api.schemas.files import LINK_TTL_MAX, SignedUrlQuery, SignedUrlsBody
from api.schemas.kajabi import KajabiFlat, KajabiHook
from api.schemas.slo import SloQuery
from api.schemas.stats import StatsQuery

REF = "#/components/schemas/{model}"
BODY_MODELS = (KajabiHook, KajabiFlat, SignedUrlsBody)


@functools.cache
def _model_schemas() -> tuple[dict, dict]:
    """({model: its schema or $ref}, {name: component schema}) for every body model."""
    refs, top = models_json_schema([(m, "validation") for m in BODY_MODELS], ref_template=REF)
    return {m: refs[(m, "validation")] for m in BODY_MODELS}, top.get("$defs", {})


def _body(*models) -> dict:
    refs, _ = _model_schemas()
    schema = refs[models[0]] if len(models) == 1 else {"anyOf": [refs[m] for m in models]}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _query(model) -> list[dict]:
    """A query model's fields as OpenAPI parameters (an optional field's `null` dropped: a query
    string has no null)."""
    schema = model.model_json_schema(ref_template=REF)
    params = []
    for name, prop in schema["properties"].items():
        prop = copy.deepcopy(prop)
        for member in prop.pop("anyOf", []):
            if member.get("type") != "null":
                prop.update(member)
        description = prop.pop("description", "")
        prop.pop("title", None)
        prop.pop("default", None)
        params.append({"name": name, "in": "query", "required": name in schema.get("required", []),
                       "description": description, "schema": prop})
    return params


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
    "invalid_parameter": _error("validation_error", "invalid_parameter", "Some parameters are not valid. Failing: days.",
                                [{"field": "days", "issue": "Input should be greater than or equal to 1"}]),
    "invalid_payload": _error("validation_error", "invalid_payload",
                              "The body does not match Kajabi's hook form. Failing: payload[1].attributes.name.",
                              [{"field": "payload[1].attributes.name", "issue": "Input should be a valid string"}]),
    "invalid_json": _error("validation_error", "invalid_json", "The body is not standard JSON.",
                           [{"field": "body", "issue": "NaN is not a JSON number"}]),
    "invalid_encoding": _error("validation_error", "invalid_encoding", "The body must be UTF-8 encoded JSON.",
                               [{"field": "body", "issue": "not UTF-8 at byte 0"}]),
    "payload_too_large": _error("validation_error", "payload_too_large", "The request is larger than this service accepts."),
    "unsupported_media_type": _error("validation_error", "unsupported_media_type", "Send the body as application/json.",
                                     [{"field": "Content-Type", "issue": "got text/plain"}]),
    "unauthenticated": _error("auth_error", "unauthenticated", "Sign in to continue."),
    "bearer_missing": _error("auth_error", "unauthenticated", "Send Authorization: Bearer <CRON_SECRET>."),
    "invalid_token": _error("auth_error", "invalid_token", "The bearer token is not valid."),
    "invalid_secret": _error("auth_error", "invalid_secret", "The webhook secret is missing or wrong."),
    "internal_not_configured": _error("auth_error", "not_configured",
                                      "INTERNAL_METRICS_TOKEN is not set, so internal endpoints refuse everyone."),
    "link_invalid": _error("auth_error", "link_invalid", "This download link is not valid."),
    "not_found": _error("not_found", "not_found", "The requested URL was not found on the server."),
    "file_not_found": _error("not_found", "file_not_found", "This file does not exist."),
    "job_not_found": _error("not_found", "job_not_found", "No job with this id is known."),
    "not_configured": _error("unavailable", "not_configured", "CRON_SECRET is not set, so this endpoint is off."),
    "file_not_ready": _error("conflict", "file_not_ready", "This file is still being scanned for viruses."),
    "file_not_scanned": _error("conflict", "file_not_scanned", "This file was uploaded while virus scanning was off and has not been scanned yet."),
    "thumbnail_not_ready": _error("conflict", "thumbnail_not_ready", "The thumbnail is still being made. Try again in a minute."),
    "file_infected": _error("not_found", "file_infected", "This file contained malware (Eicar-Test-Signature) and was deleted."),
    "file_deleted": _error("not_found", "file_deleted", "This file was deleted under the retention policy."),
    "file_unscannable": _error("validation_error", "file_unscannable",
                               "This file could not be fully checked for viruses, so it is never served: it holds more "
                               "than our virus scanner can check (for example a large attachment inside the document). "
                               "Send the document without attachments, or split it into smaller files.",
                               [{"field": "file", "issue": "limits_exceeded: Heuristics.Limits.Exceeded.MaxFileSize"}]),
    "thumbnail_failed": _error("validation_error", "thumbnail_failed",
                               "No preview: the image is damaged. The original can still be downloaded.",
                               [{"field": "file", "issue": "the image is damaged"}]),
    "internal": _error("internal", "internal_error", "Something went wrong on our side. Quote request id 3f2a... when reporting it."),
    "database_timeout": _error("unavailable", "database_timeout",
                               "The database took too long to answer; nothing was saved. Try again shortly. (request id 3f2a...)"),
}

STATUS_EXAMPLES = {
    "400": ["invalid_parameter", "invalid_payload", "invalid_json", "invalid_encoding"],
    "401": ["unauthenticated"],
    "403": ["invalid_secret"],
    "404": ["not_found"],
    "409": ["duplicate_event", "cap_reached", "unmatched_contact", "file_not_ready", "file_not_scanned",
            "thumbnail_not_ready"],
    "410": ["file_infected", "file_deleted"],
    "422": ["file_unscannable", "thumbnail_failed"],
    "413": ["payload_too_large"],
    "415": ["unsupported_media_type"],
    "500": ["internal"],
    "503": ["not_configured"],
}

# RFC 6750: every 401 of a bearer route says how to authenticate.
CHALLENGE = {"WWW-Authenticate": {"required": True, "description": 'Bearer, or Bearer error="invalid_token" '
                                  "when a token was sent", "schema": {"type": "string", "pattern": "^Bearer"}}}


def _errors(*statuses: str, examples: dict[str, list[str]] | None = None, bearer: bool = False) -> dict:
    """Every operation may also answer 500, and 503 when a statement passes DB_STATEMENT_TIMEOUT_MS
    or the database is down (with Retry-After). `examples` overrides a status's example names."""
    examples = examples or {}
    out = {}
    for status in dict.fromkeys(statuses + ("500", "503")):
        names = examples.get(status) or (STATUS_EXAMPLES[status] if status in statuses or status == "500" else [])
        names = names + (["database_timeout"] if status == "503" else [])
        out[status] = {
            "description": "Error envelope",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"},
                                             "examples": {name: EXAMPLES[name] for name in names}}},
        }
        if status == "401" and bearer:
            out[status]["headers"] = CHALLENGE
    return out


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


FILE_ID = {"name": "file_id", "in": "path", "required": True, "description": "Evidence file id",
           "schema": {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}}
CRON = [{"cron": []}]
INTERNAL = [{"internal": []}, {"internal_header": []}]
SESSION = [{"session": []}]
WEBHOOK = [{"webhook_token": []}, {"webhook_header": []}]
OBJ = {"type": "object"}
FILE_ERRORS = {"404": ["file_not_found", "not_found"], "401": ["unauthenticated"]}


def document() -> dict:
    signed = {"type": "object", "required": ["file_id", "url", "expires_at", "ttl"],
              "properties": {"file_id": {"type": "integer"}, "url": {"type": "string"},
                             "expires_at": {"type": "string", "format": "date-time"},
                             "ttl": {"type": "integer", "minimum": 1, "maximum": LINK_TTL_MAX}}}
    batch_link = {"type": "object", "required": ["file_id", "url", "expires_at", "ttl"],
                  "properties": signed["properties"]}
    batch_error = {"type": "object", "required": ["file_id", "code", "message"],
                   "properties": {"file_id": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"}}}
    cron_errors = {"401": ["bearer_missing", "invalid_token"], "404": ["job_not_found"]}
    paths = {
        "/api/webhooks/kajabi": {"post": {
            "summary": "Kajabi tag webhook", "tags": ["kajabi"], "security": WEBHOOK,
            "description": "Secret as ?token=, X-Webhook-Secret, or X-Kajabi-Signature (HMAC-SHA256 hex of the body). "
                           "Either documented body form (Kajabi's hook form or the flat form), UTF-8 JSON as RFC 8259 "
                           "defines it (no NaN/Infinity, no duplicate keys), nested at most 16 deep, no NUL or other "
                           "control characters. Bodies over 64 KiB are refused. Nothing is written for a rejected call.",
            "requestBody": _body(KajabiHook, KajabiFlat),
            "responses": {"202": _json("Stored and queued", {"type": "object", "required": ["event_id", "status"], "properties": {
                "event_id": {"type": "string"}, "status": {"const": "queued"}}}),
                "200": _json("The same event again", {"type": "object", "required": ["event_id", "status"], "properties": {
                    "event_id": {"type": "string"}, "status": {"const": "duplicate"}}}),
                **_errors("400", "403", "413", "415", "503")}}},
        "/api/stats": {"get": {
            "summary": "Aggregate points by activity and period", "tags": ["stats"],
            "description": "Cache-Control: public, s-maxage=1800, stale-while-revalidate=60; ETag; 304 on If-None-Match.",
            "parameters": _query(StatsQuery),
            "responses": {"200": _json("Aggregates", OBJ), "304": {"description": "Not modified"}, **_errors("400")}}},
        "/api/cron/enforce-retention": {"get": {
            "summary": "Enqueue one retention batch", "tags": ["cron"], "security": CRON,
            "parameters": _query(EnforceRetentionQuery),
            "responses": {"202": _json("Batch enqueued", {"type": "object", "required": ["job_id", "cutoff", "next_offset"], "properties": {
                "job_id": {"type": "string"}, "run_id": {"type": "integer"}, "cutoff": {"type": "string", "format": "date-time"},
                "offset": {"type": "integer"}, "limit": {"type": "integer"}, "users_in_batch": {"type": "integer"},
                "next_offset": {"type": ["integer", "null"]}}}),
                **_errors("400", "401", "503", examples=cron_errors, bearer=True)}}},
        "/api/cron/jobs/{job_id}": {"get": {
            "summary": "A cron job's state and counts", "tags": ["cron"], "security": CRON,
            "parameters": [{"name": "job_id", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": JOB_ID_PATTERN}}],
            "responses": {"200": _json("Job state", {"type": "object", "required": ["job_id", "state"], "properties": {
                "job_id": {"type": "string"}, "state": {"type": "string"}}}),
                **_errors("401", "404", "503", examples=cron_errors, bearer=True)}}},
        "/api/slo": {"get": {
            "summary": "SLO summary (ENABLE_INTERNAL_ENDPOINTS=1 and INTERNAL_METRICS_TOKEN)", "tags": ["internal"],
            "security": INTERNAL,
            "parameters": _query(SloQuery),
            "responses": {"200": _json("kajabi_to_ledger, queued_unmatched, outbox, scans", OBJ),
                          **_errors("400", "401", "403", "404", bearer=True,
                                    examples={"401": ["invalid_token"], "403": ["internal_not_configured"]})}}},
        "/api/files/{file_id}": {"get": {
            "summary": "Download evidence as an attachment (302 to a presigned link, or streamed)", "tags": ["files"],
            "security": SESSION, "parameters": [FILE_ID],
            "responses": {"200": {"description": "The file, Content-Disposition: attachment",
                                  "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                          "302": {"description": "Redirect to a presigned link (at most 3600 s)"},
                          **_errors("401", "404", "409", "410", "422", examples=FILE_ERRORS)}}},
        "/api/files/{file_id}/signed-url": {"get": {
            "summary": "A short-lived download link", "tags": ["files"], "security": SESSION,
            "parameters": [FILE_ID, *_query(SignedUrlQuery)],
            "responses": {"200": _json("Link", signed), **_errors("400", "401", "404", "409", "410", "422", examples=FILE_ERRORS)}}},
        "/api/files/{file_id}/thumbnail": {"get": {
            "summary": "The EXIF-free thumbnail of a clean image", "tags": ["files"], "security": SESSION,
            "parameters": [FILE_ID],
            "responses": {"200": {"description": "JPEG", "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
                          **_errors("401", "404", "409", "410", "422", examples=FILE_ERRORS)}}},
        "/api/files/{file_id}/preview/{page}": {"get": {
            "summary": "A preview image the server made: page N of a PDF (PNG) or an image's larger EXIF-free JPEG",
            "tags": ["files"], "security": SESSION,
            "parameters": [FILE_ID, {"name": "page", "in": "path", "required": True,
                                     "schema": {"type": "integer", "minimum": 1, "maximum": 5}}],
            "responses": {"200": {"description": "PNG or JPEG", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}, "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
                          **_errors("401", "404", "409", "410", "422", examples=FILE_ERRORS)}}},
        "/api/files/signed-urls": {"post": {
            "summary": "Many short-lived links at once", "tags": ["files"], "security": SESSION,
            "requestBody": _body(SignedUrlsBody),
            "responses": {"200": _json("Links and per-file errors", {"type": "object", "required": ["urls", "errors"], "properties": {
                "urls": {"type": "array", "items": batch_link}, "errors": {"type": "array", "items": batch_error}}}),
                **_errors("400", "401", "413", "415", examples={"400": ["invalid_parameter", "invalid_json"]})}}},
        "/api/storage/local": {"get": {
            "summary": "Serve an app-signed link of the local storage backend", "tags": ["files"],
            "parameters": [{"name": n, "in": "query", "required": True, "schema": {"type": "string"}}
                           for n in ("key", "exp", "fn", "sig")],
            "responses": {"200": {"description": "The file as an attachment",
                                  "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                          **_errors("403", "404", examples={"403": ["link_invalid"]})}}},
        "/api/openapi.json": {"get": {
            "summary": "This document", "tags": ["meta"], "responses": {"200": _json("OpenAPI 3.1", OBJ)}}},
    }
    _, models = _model_schemas()
    return {
        "openapi": "3.1.0",
        "info": {"title": "Points programme API", "version": "1.0.0",
                 "description": "Every error is the envelope {type, code, message, details}; a 400 names each failing "
                                "field in details by its path (payload[1].attributes.name). See docs/errors.md."},
        "paths": paths,
        "components": {
            "schemas": {**copy.deepcopy(models), "Error": {"type": "object", "required": ["type", "code", "message", "details"], "properties": {
                "type": {"type": "string", "enum": ["validation_error", "auth_error", "not_found", "conflict",
                                                    "rate_limited", "unavailable", "internal"]},
                "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object", "properties": {
                    "field": {"type": "string"}, "issue": {"type": "string"}}}}}}},
            "securitySchemes": {
                "cron": {"type": "http", "scheme": "bearer", "description": "CRON_SECRET"},
                "internal": {"type": "http", "scheme": "bearer", "description": "INTERNAL_METRICS_TOKEN"},
                "internal_header": {"type": "apiKey", "in": "header", "name": "X-Internal-Metrics-Token",
                                    "description": "INTERNAL_METRICS_TOKEN"},
                "webhook_token": {"type": "apiKey", "in": "query", "name": "token", "description": "KAJABI_WEBHOOK_SECRET"},
                "webhook_header": {"type": "apiKey", "in": "header", "name": "X-Webhook-Secret",
                                   "description": "KAJABI_WEBHOOK_SECRET"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session", "description": "Portal sign-in"}},
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
