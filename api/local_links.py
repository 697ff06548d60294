"""GET /api/storage/local: serves the app-signed links of the local storage backend.

The link itself is the authorisation (issued by the files route after its own checks), so this
route only verifies the signature and expiry, then streams the file as an attachment.
"""
from __future__ import annotations

from flask import current_app, request

from api.blueprint import bp
from api.attachments import attachment_response
from core.platform.errors import NotFound
from core.storage.local import LocalStorage


@bp.get("/storage/local")
def serve_local_link():
    storage = current_app.extensions["points"].storage
    if not isinstance(storage, LocalStorage):  # links of this kind do not exist on MinIO
        raise NotFound("not_found", "No such route.")
    args = request.args
    key, exp, fn, sig = (args.get(name, "") for name in ("key", "exp", "fn", "sig"))
    storage.verify_link(key, exp, fn, sig)  # AuthError -> 403 envelope (link_invalid / link_expired)

    return attachment_response(storage, key, fn)
