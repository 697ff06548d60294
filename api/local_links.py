"""GET /api/storage/local: serves the app-signed links of the local storage backend.

The link itself is the authorisation (issued by the files route after its own checks), so this
route only verifies the signature and expiry, then streams the file as an attachment.
"""
from __future__ import annotations

from flask import Response, current_app, request

from api import bp
from core.errors import NotFound
from core.storage.base import content_disposition
from core.storage.local import LocalStorage

CHUNK = 256 * 1024


@bp.get("/storage/local")
def serve_local_link():
    storage = current_app.extensions["points"].storage
    if not isinstance(storage, LocalStorage):  # links of this kind do not exist on MinIO
        raise NotFound("not_found", "No such route.")
    args = request.args
    key, exp, fn, sig = (args.get(name, "") for name in ("key", "exp", "fn", "sig"))
    storage.verify_link(key, exp, fn, sig)  # AuthError -> 403 envelope (link_invalid / link_expired)

    size = storage.stat(key).size  # ObjectNotFound -> 404 before any byte is sent
    fh = storage.open(key)

    def body():
        while chunk := fh.read(CHUNK):
            yield chunk

    response = Response(body(), mimetype="application/octet-stream", direct_passthrough=True)
    response.call_on_close(fh.close)  # also runs for HEAD and aborted downloads, where body() never finishes
    response.content_length = size
    response.headers["Content-Disposition"] = content_disposition(fn)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    return response
