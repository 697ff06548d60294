"""The error envelope (CONTRACT.md) for requests gunicorn refuses before the app runs.

gunicorn parses the request line and headers itself and answers what it cannot parse with its
own HTML page: a request line over `limit_request_line` (4094 bytes) 414, over
`limit_request_fields` headers (100) or a header over `limit_request_field_size` (8190 bytes) 431,
a malformed line, header or chunked body 400. An API client then reads HTML where every other
error is the JSON envelope. This module answers them with the envelope instead: a stable `code`
per kind of refusal, the status gunicorn chose, `Connection: close` (the rest of the stream cannot
be trusted). The request never reached the app, so it cannot tell the API from the portal; a
browser shows the JSON, as it would for any API error.

Used by core.platform.gunicorn_worker.BalancedThreadWorker.handle_error. Relies on gunicorn 27's
exception classes (gunicorn.http.errors), pinned in requirements.txt; tests/test_gunicorn_errors.py
sends each kind of request to a real gunicorn.
"""
from __future__ import annotations

import json
import ssl
from dataclasses import dataclass

from gunicorn.http import errors as http

from core.platform.request_body import CODING_UNSUPPORTED


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str  # the status line's reason phrase (RFC 9110 section 15)
    type: str  # the envelope's type (CONTRACT.md)
    code: str
    message: str
    field: str  # what part of the request was refused, for details[0].field


MALFORMED = Refusal(400, "Bad Request", "validation_error", "bad_request",
                    "The request could not be read as HTTP/1.1; nothing was done.", "request")
INTERNAL = Refusal(500, "Internal Server Error", "internal", "internal_error",
                   "Something went wrong on our side; nothing was done. Try again.", "request")

# Most specific first: gunicorn's classes share a base (ParseException).
_BY_EXCEPTION: tuple[tuple[type[Exception], Refusal], ...] = (
    # A header the app tried to send: the app's fault (gunicorn's handle_error says the same).
    (http.InvalidResponseHeader, INTERNAL), (http.InvalidResponseHeaderName, INTERNAL),
    (http.LimitRequestLine, Refusal(414, "URI Too Long", "validation_error", "request_line_too_long",
                                    "The address (path and query) is longer than this server accepts.", "request_line")),
    (http.LimitRequestHeaders, Refusal(431, "Request Header Fields Too Large", "validation_error", "headers_too_large",
                                       "The request has too many headers, or one too long.", "headers")),
    (http.UnsupportedTransferCoding, Refusal(501, "Not Implemented", "validation_error", "transfer_coding_unsupported",
                                             CODING_UNSUPPORTED, "headers.transfer-encoding")),
    (http.ExpectationFailed, Refusal(417, "Expectation Failed", "validation_error", "expectation_unsupported",
                                     "Only `Expect: 100-continue` is supported.", "headers.expect")),
    (http.ForbiddenProxyRequest, Refusal(403, "Forbidden", "auth_error", "proxy_forbidden",
                                         "The PROXY header came from an address not allowed to send it.", "request")),
    (http.InvalidRequestLine, MALFORMED), (http.InvalidRequestMethod, MALFORMED),
    (http.InvalidHTTPVersion, MALFORMED), (http.InvalidHeader, MALFORMED), (http.InvalidHeaderName, MALFORMED),
    (http.InvalidProxyLine, MALFORMED), (http.InvalidSchemeHeaders, MALFORMED), (http.ObsoleteFolding, MALFORMED),
    (http.InvalidChunkSize, MALFORMED), (http.ChunkMissingTerminator, MALFORMED),
    (http.InvalidChunkExtension, MALFORMED), (http.InvalidH2CPreface, MALFORMED),
)
_ISSUE_CHARS = 200  # of gunicorn's own description, which may quote the client's bytes


def refusal_for(exc: BaseException) -> Refusal:
    """The refusal for an exception gunicorn raised while reading a request: one of gunicorn's
    parse errors -> its 4xx/501 (statuses as gunicorn 27's Worker.handle_error gives them), an
    SSL error -> 403, anything else -> 500 `internal_error`."""
    for cls, refusal in _BY_EXCEPTION:
        if isinstance(exc, cls):
            return refusal
    if isinstance(exc, ssl.SSLError):
        return Refusal(403, "Forbidden", "auth_error", "tls_refused", "The TLS handshake failed.", "request")
    return INTERNAL


def response_bytes(exc: BaseException) -> bytes:
    """The whole HTTP/1.1 response (status line, headers, envelope body) for `exc`. The details
    name the refused part and, for a client error, what gunicorn found (at most 200 characters,
    JSON-escaped; never for a 500, whose cause stays in the log)."""
    refusal = refusal_for(exc)
    issue = (str(exc) or type(exc).__name__)[:_ISSUE_CHARS] if refusal.status < 500 else "internal"
    body = json.dumps({"type": refusal.type, "code": refusal.code, "message": refusal.message,
                       "details": [{"field": refusal.field, "issue": issue}]}).encode()
    head = (f"HTTP/1.1 {refusal.status} {refusal.reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body
