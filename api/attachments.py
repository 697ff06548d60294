"""One way to stream a stored object as a download: an attachment, never rendered, never cached."""
from __future__ import annotations

from flask import Response, request
from werkzeug.wsgi import wrap_file

from core.storage.base import content_disposition

CHUNK = 256 * 1024
EVIDENCE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-store",
}


def attachment_response(storage, key: str, filename: str | None, *, sha256: str | None = None,
                        on_mismatch=None) -> Response:
    """With `sha256` and a backend that can (local), the bytes are verified as they stream and
    the last of them withheld on a mismatch (`on_mismatch()` runs), so the client gets a short,
    failed download instead of altered evidence."""
    size = storage.stat(key).size  # ObjectNotFound -> 404 before a byte is sent
    verified = sha256 is not None and hasattr(storage, "open_verified")
    fh = storage.open_verified(key, sha256, on_mismatch) if verified else storage.open(key)
    # wrap_file, not a generator plus call_on_close: with direct_passthrough werkzeug hands the
    # iterable to the server as is, so only the iterable's own close() is ever called.
    response = Response(wrap_file(request.environ, fh, CHUNK), mimetype="application/octet-stream",
                        direct_passthrough=True)
    response.content_length = size
    response.headers["Content-Disposition"] = content_disposition(filename)
    response.headers.update(EVIDENCE_HEADERS)
    return response
