"""GET /api/storage/local: serves the app-signed links of the local storage backend.

The link itself is the authorisation (issued by the files route after its own checks), so this
route only verifies the signature and expiry, then streams the file as an attachment.
"""
from __future__ import annotations

from flask import current_app, request
from sqlalchemy import select

from api.blueprint import bp
from api.attachments import attachment_response
from api.files import Gone, recheck_later
from core.platform.db import db
from core.platform.errors import NotFound
from core.platform.models import EvidenceFile
from core.storage.local import LocalStorage


@bp.get("/storage/local")
def serve_local_link():
    storage = current_app.extensions["points"].storage
    if not isinstance(storage, LocalStorage):  # links of this kind do not exist on MinIO
        raise NotFound("not_found", "No such route.")
    args = request.args
    key, exp, fn, sig = (args.get(name, "") for name in ("key", "exp", "fn", "sig"))
    storage.verify_link(key, exp, fn, sig)  # AuthError -> 403 envelope (link_invalid / link_expired)
    # A link issued before a quarantine must not outlive it; evidence also streams verified.
    file = db.session.scalar(select(EvidenceFile).where(EvidenceFile.storage_key == key))
    if file is None:
        return attachment_response(storage, key, fn)
    if file.quarantined_at is not None:
        raise Gone("file_quarantined", "This file no longer matches what was uploaded, so it was quarantined "
                                       "and cannot be downloaded. An administrator has been told.")
    return attachment_response(storage, key, fn, sha256=file.sha256, on_mismatch=recheck_later(file.id))
