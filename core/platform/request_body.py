"""The request body as the app reads it: whole, or refused with a clear 4xx.

A WSGI middleware (installed by create_app) puts `ClientBody` in front of `wsgi.input`, so every
reader (form parsing, the CSRF check, the JSON doors) sees the same rules:

- **A body shorter than its Content-Length is refused**, 400 `bad_request`. RFC 9112 section 8
  calls such a message incomplete; gunicorn's reader hands back the short read as if it were all,
  so a cut-off webhook was stored and a cut-off form read as one without its CSRF token
  (`csrf_failed`, counted as an attack). Reads are filled up to what was asked (or what is left of
  the declared length), so the first read that meets the end early says so.
- **A body that cannot be read is refused**, 400 `bad_request`: a malformed chunked body (gunicorn
  raises its parse errors from inside the app's read) or a connection lost part-way.
- **A client that stops sending is dropped**, 408 `request_timeout`: the web worker gives client
  sockets a read timeout (WEB_CLIENT_TIMEOUT, core/platform/gunicorn_worker.py), and the read that
  runs into it ends the request instead of holding a thread for ever.
- **A transfer coding other than chunked** (`Transfer-Encoding: gzip, chunked`) is refused on the
  first read, 501 `transfer_coding_unsupported`: gunicorn removes the chunking but not the gzip,
  and the app would read compressed bytes as the body (RFC 9112 section 6.1: SHOULD 501).

Errors are raised from the read, as werkzeug HTTP exceptions or a DomainError, so the app's error
handlers answer them (the envelope for JSON clients, the error page for browsers).
"""
from __future__ import annotations

import logging

from werkzeug.exceptions import BadRequest, HTTPException, RequestTimeout

from core.platform.errors import DomainError, ValidationError

log = logging.getLogger(__name__)

UNREADABLE = "The request body could not be read (a malformed chunked body, or the connection was lost); nothing was done."
TOO_SLOW = "The client stopped sending the request for too long; nothing was done. Send it again."
# Shared with core.platform.gunicorn_errors, which refuses the codings gunicorn itself rejects.
CODING_UNSUPPORTED = "Send the body as is or chunked; other transfer codings are not supported."


class ClientBody:
    """`wsgi.input` with the rules of the module docstring. `length`: the declared
    Content-Length (None for a chunked body); `refusal`: an error to raise on the first read."""

    def __init__(self, stream, length: int | None, refusal: Exception | None = None):
        self._stream, self._length, self._left, self._refusal = stream, length, length, refusal

    def _ended_early(self, received: int) -> BadRequest:
        """The refusal (logged) for a body that ended after `received` of its declared bytes."""
        log.warning("request body shorter than its Content-Length",
                    extra={"declared": self._length, "received": received})
        return BadRequest(f"The body ended after {received} of the {self._length} bytes its "
                          "Content-Length declared; nothing was done.")

    def _read_once(self, method, size: int) -> bytes:
        if self._refusal is not None:
            raise self._refusal
        try:
            return method(size)
        except (HTTPException, DomainError):
            raise
        except (BlockingIOError, TimeoutError) as exc:  # the socket's read timeout ran out
            log.warning("client stopped sending the request body", extra={"error": type(exc).__name__})
            raise RequestTimeout(TOO_SLOW) from exc
        except Exception as exc:  # noqa: BLE001 - any failure to read the client's bytes is theirs
            log.warning("request body could not be read", extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}"})
            raise BadRequest(UNREADABLE) from exc

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (all that is left when None or negative): exactly that many while
        the declared length lasts. Raises BadRequest (400) when the body ends before its
        Content-Length or cannot be read, RequestTimeout (408) past the read timeout."""
        if self._left is None:
            return self._read_once(self._stream.read, -1 if size is None else size)
        want = self._left if size is None or size < 0 else min(size, self._left)
        parts, got = [], 0
        while got < want:
            data = self._read_once(self._stream.read, want - got)
            if not data:
                raise self._ended_early(self._length - self._left + got)
            parts.append(data)
            got += len(data)
        self._left -= got
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        """One line (at most `size` bytes), with the rules of read()."""
        limit = -1 if size is None else size
        if limit == 0:
            return b""  # as file objects answer; asking the stream for 0 bytes would read as its end
        if self._left is not None:
            if self._left == 0:
                return b""
            limit = self._left if limit < 0 else min(limit, self._left)
        line = self._read_once(self._stream.readline, limit)
        if self._left is not None:
            if not line:
                raise self._ended_early(self._length - self._left)
            self._left -= len(line)
        return line

    def __iter__(self):
        while line := self.readline():
            yield line


def _declared_length(environ: dict) -> int | None:
    raw = environ.get("CONTENT_LENGTH", "")
    # Chunked: the server ends the body. A malformed length never reaches here (the server or
    # werkzeug refuses it first); read as no declared length, the guard then adds nothing.
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() or not raw.strip().isdigit():
        return None
    return int(raw)


def _unsupported_coding(environ: dict) -> Exception | None:
    codings = [c.strip().lower() for c in environ.get("HTTP_TRANSFER_ENCODING", "").split(",") if c.strip()]
    others = [c for c in codings if c != "chunked"]
    if not others:
        return None
    return ValidationError("transfer_coding_unsupported", CODING_UNSUPPORTED,
                           [{"field": "headers.transfer-encoding", "issue": ", ".join(others)[:200]}], status=501)


class GuardedInput:
    """WSGI middleware: wraps `wsgi.input` in ClientBody for every request (create_app)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if "wsgi.input" in environ:
            environ["wsgi.input"] = ClientBody(environ["wsgi.input"], _declared_length(environ),
                                               _unsupported_coding(environ))
        return self.app(environ, start_response)
