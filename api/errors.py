"""The one error envelope: {type, code, message, details}. App-level handlers, because blueprint
handlers never see routing 404s/405s, and the portal's HTML errors share the same decisions."""
from __future__ import annotations

import logging

from flask import Flask, g, jsonify, render_template
from psycopg.errors import DeadlockDetected, QueryCanceled, SerializationFailure
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from core.platform.db import db
from core.platform.errors import DomainError
from core.platform.web import wants_json

log = logging.getLogger(__name__)

# Stable codes for HTTP-level failures.
HTTP_CODES = {
    400: ("validation_error", "bad_request"),
    401: ("auth_error", "unauthenticated"),
    403: ("auth_error", "forbidden"),
    404: ("not_found", "not_found"),
    405: ("validation_error", "method_not_allowed"),
    408: ("validation_error", "request_timeout"),
    409: ("conflict", "conflict"),
    413: ("validation_error", "payload_too_large"),
    415: ("validation_error", "unsupported_media_type"),
    422: ("validation_error", "unprocessable"),
    429: ("rate_limited", "rate_limited"),
    503: ("unavailable", "unavailable"),
}


def error_response(status: int, type_: str, code: str, message: str, details: list | None = None):
    body = {"type": type_, "code": code, "message": message, "details": details or []}
    response = jsonify(body)
    response.status_code = status
    return response


def _html(status: int, message: str):
    return render_template("portal/error.html", status=status, message=message), status


def _reset_session() -> None:
    """Roll back a failed transaction before rendering an error page, which may read the
    database (the signed-in user for the navigation); a broken connection is discarded."""
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the page must still render
        log.warning("rollback before an error page failed", exc_info=True)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        if wants_json():
            response = error_response(exc.status, exc.type, exc.code, exc.message, exc.details)
        else:
            response = app.make_response(_html(exc.status, exc.message))
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        type_, code = HTTP_CODES.get(status, ("internal" if status >= 500 else "validation_error", "http_error"))
        message = exc.description or exc.name
        if status == 413:
            message = "The request is larger than this service accepts."
        if status == 400 and "CSRF" in (exc.description or ""):
            code, message = "csrf_failed", "The form expired or was not sent from this site. Reload the page and try again."
        if wants_json():
            response = error_response(status, type_, code, message)
            if status == 405 and getattr(exc, "valid_methods", None):
                response.headers["Allow"] = ", ".join(exc.valid_methods)
            return response
        return _html(status, message)

    @app.errorhandler(OperationalError)
    def database_error(exc: OperationalError):
        # A statement over DB_STATEMENT_TIMEOUT_MS, or no database: nothing was committed, and
        # the client may retry, so 503 rather than a bare 500.
        request_id = getattr(g, "request_id", "-")
        retry_after = "5"
        if isinstance(exc.orig, QueryCanceled):
            code, message = "database_timeout", "The database took too long to answer; nothing was saved. Try again shortly."
        elif isinstance(exc.orig, (DeadlockDetected, SerializationFailure)):
            # PostgreSQL broke a lock cycle with another change (two bulk decisions that overlap):
            # this one was rolled back whole, and trying again normally just works.
            code, message = "database_conflict", "Another change to the same records collided with this one; nothing was saved. Try again."
            retry_after = "1"
        else:
            code, message = "database_unavailable", "The database cannot be reached; nothing was saved. Try again shortly."
        _reset_session()
        log.warning("database error answered with 503", extra={"request_id": request_id, "code": code,
                                                               "error": str(exc.orig).splitlines()[0][:200]})
        if wants_json():
            response = error_response(503, "unavailable", code, f"{message} (request id {request_id})")
        else:
            response = app.make_response(_html(503, message))
        response.headers["Retry-After"] = retry_after
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # Logged with the request id; the client gets the id, never the details.
        log.exception("unhandled exception", extra={"request_id": getattr(g, "request_id", None)})
        _reset_session()  # the error page itself may read the database (the signed-in user)
        message = f"Something went wrong on our side. Quote request id {getattr(g, 'request_id', '-')} when reporting it."
        if wants_json():
            return error_response(500, "internal", "internal_error", message)
        return _html(500, message)
