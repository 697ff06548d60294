"""Request hooks shared by every door: request ids, one JSON log line per request, headers."""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.routing import IntegerConverter

from core.platform.errors import ValidationError
from core.platform.logs import request_id_var

log = logging.getLogger("request")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# No inline script anywhere: the portal's JS lives in static/.
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")


BIGINT_MAX = 2**63 - 1


class BigintConverter(IntegerConverter):
    """`<int:...>` for every route: ids are PostgreSQL bigint, so a larger number matches no route
    (404) instead of reaching the database, which refuses it ("bigint out of range", a 500)."""

    regex = r"[0-9]+"  # ASCII digits only: Python's \d also takes "١" and "１" as digits

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = BIGINT_MAX,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits, min, max, signed)


# Characters no form field or query parameter may carry: C0 controls other than tab, LF and CR
# (PostgreSQL refuses NUL outright: a 500 once), DEL, C1 controls, lone surrogates.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def holds_control_characters(text: str) -> bool:
    """True if `text` holds a character no field may carry (_FORBIDDEN). For text decoded once
    more past the request's own check, such as a query string carried inside a parameter."""
    return bool(_FORBIDDEN.search(text))


def control_character_fields() -> list[str]:
    """Names of the query parameters and form fields of the current request whose name or value
    holds a character of _FORBIDDEN (file parts are checked by the upload code)."""
    sources = [request.args]
    if request.mimetype in _FORM_TYPES:
        sources.append(request.form)
    bad = []
    for source in sources:
        for name, value in source.items(multi=True):
            if _FORBIDDEN.search(name) or _FORBIDDEN.search(value):
                shown = _FORBIDDEN.sub("?", name)[:64]
                if shown not in bad:
                    bad.append(shown)
    return bad


def wants_json() -> bool:
    if request.path.startswith("/api/") or request.path == "/api" or request.path in ("/metrics", "/readyz", "/healthz"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


# Machine-to-machine doors that authenticate every request themselves and never use a browser
# session: no cookie is verified on the way in, none is written or varied on the way out.
SESSIONLESS_PREFIXES = ("/api/webhooks/",)


class PointsSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, except on SESSIONLESS_PREFIXES, where the request gets the
    null session (reads see it empty, a write raises). Opening and saving the cookie session was
    about a tenth of a Kajabi hook's time in the app."""

    def open_session(self, app, request):
        if request.path.startswith(SESSIONLESS_PREFIXES):
            return self.make_null_session(app)
        return super().open_session(app, request)


def register_request_hooks(app: Flask) -> None:
    @app.before_request
    def _start():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        g.request_token = request_id_var.set(g.request_id)
        g.started = time.perf_counter()

    @app.before_request
    def _refuse_control_characters():
        # Every door's typed input, before any rule runs; the JSON API's bodies have their own reader.
        if request.path.startswith("/api/"):
            return None
        bad = control_character_fields()
        if bad:
            raise ValidationError("control_characters",
                                  "Some of what was sent holds control characters, which cannot be stored. "
                                  "Remove them (retype the text) and try again.",
                                  [{"field": name, "issue": "contains a control character"} for name in bad])
        return None

    @app.after_request
    def _finish(response):
        rid = getattr(g, "request_id", None) or uuid.uuid4().hex
        response.headers["X-Request-ID"] = rid
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
        started = getattr(g, "started", None)
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
        log.info("request", extra={"method": request.method, "path": request.path, "status": response.status_code,
                                   "duration_ms": duration_ms, "request_id": rid})
        return response

    @app.teardown_request
    def _reset(_exc):
        token = g.pop("request_token", None)
        if token is not None:
            request_id_var.reset(token)
