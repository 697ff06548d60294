"""Evidence downloads: the one route family that authorises every read of an evidence file.

Who: a signed-in portal user (Flask-Login session) who uploaded the file, or a reviewer/admin.
Anonymous -> 401 `unauthenticated`; another uploader -> 404 `file_not_found`, so the existence of
someone else's file is never revealed.

When: only a servable file (core.evidence.uploads.servable). Otherwise:
- 409 `file_not_ready`   scan still pending (it may become servable; ask again later)
- 409 `file_not_scanned` uploaded while scanning was off, and scanning is on now
- 410 `file_infected`    the scanner found malware; the object was deleted and never comes back
- 422 `file_unscannable` the scanner stopped at its own limits or refused the file (final)
- 410 `file_deleted`     removed by retention
- 410 `file_quarantined` its stored bytes no longer match the upload's SHA-256 (integrity sweep)
410 (type `not_found`) says "gone for good", which 409 ("not yet") must not be confused with.

How: the local backend streams the bytes as an attachment; MinIO answers 302 to a presigned link
carrying the same disposition. Links live at most 3600 s (ttl=7200 -> 3600). Every link issued
and every download is an audit event.
"""
from __future__ import annotations

import logging

from flask import Response, jsonify, request
from flask_login import current_user

from api.blueprint import bp
from api.attachments import attachment_response
from api.json_body import read_json, read_limited, require_json
from api.schemas.common import validate, validate_query
from api.schemas.files import SignedUrlQuery, SignedUrlsBody
from core.platform import audit
from core.platform.db import db
from core.platform.errors import Conflict, DomainError, NotFound, Unauthenticated, ValidationError
from core.evidence.scanning import unscannable_advice
from core.evidence.uploads import servable
from core.platform.models import EvidenceFile
from core.platform.services import services
from core.storage.local import LocalStorage

MAX_BODY_BYTES = 16 * 1024  # the signed-urls body: 100 ids fit in a few KiB


class Gone(DomainError):
    type, status = "not_found", 410


class Unprocessable(DomainError):
    """Final: asking again gives the same answer (unlike 409 "not yet")."""
    type, status = "validation_error", 422


def _signed_in_user():
    if not current_user.is_authenticated:
        raise Unauthenticated("unauthenticated", "Sign in to continue.")
    return current_user


def _visible_file(file_id: int, user) -> EvidenceFile:
    file = db.session.get(EvidenceFile, file_id)
    if file is None or not (user.is_reviewer or file.user_id == user.id):
        raise NotFound("file_not_found", "This file does not exist.")
    return file


def _require_servable(file: EvidenceFile) -> None:
    settings = services().settings
    if file.quarantined_at is not None and file.deleted_at is None:
        raise Gone("file_quarantined", "This file no longer matches what was uploaded, so it was quarantined "
                                       "and cannot be downloaded. An administrator has been told.")
    if servable(file, settings):
        return
    if file.deleted_at is not None:
        raise Gone("file_deleted", "This file was deleted under the retention policy.")
    if file.scan_state == "infected":
        raise Gone("file_infected", f"This file contained malware ({file.scan_signature}) and was deleted.")
    if file.scan_state == "unscannable":
        raise Unprocessable("file_unscannable",
                            f"This file could not be fully checked for viruses, so it is never served: "
                            f"{unscannable_advice(file.scan_reason)}.",
                            [{"field": "file", "issue": f"{file.scan_reason}: {file.scan_signature or ''}".rstrip(": ")}])
    if file.scan_state == "unscanned":
        raise Conflict("file_not_scanned", "This file was uploaded while virus scanning was off and "
                                           "has not been scanned since, so it cannot be downloaded.")
    raise Conflict("file_not_ready", "This file is still being scanned for viruses. Try again in a minute.")


def _authorised(file_id: int) -> tuple[EvidenceFile, object]:
    user = _signed_in_user()
    file = _visible_file(file_id, user)
    _require_servable(file)
    return file, user


def recheck_later(file_id: int):
    """A callback for a download that saw altered bytes: the integrity job checks the file now
    and quarantines it. Runs while the response streams (no request context), so it holds the
    queues itself; a Redis failure is logged, and the next sweep finds the file anyway."""
    queues = services().queues

    def enqueue() -> None:
        try:
            queues.enqueue("maintenance", "jobs.integrity.verify_file", file_id, timeout=600)
        except Exception:  # noqa: BLE001 - the download has already failed closed
            logging.getLogger(__name__).warning("could not enqueue an integrity check", exc_info=True)

    return enqueue


def _issue_link(file: EvidenceFile, user, ttl: int | None):
    link = services().storage.signed_url(file.storage_key, ttl=ttl, filename=file.original_name)
    audit.record("file.link_issued", "evidence_file", file.id, actor_id=user.id, ttl=link.ttl,
                 expires_at=link.expires_at.isoformat())
    return link


@bp.get("/files/<int:file_id>")
def download_file(file_id: int):
    file, user = _authorised(file_id)
    storage = services().storage
    if not isinstance(storage, LocalStorage):
        link = _issue_link(file, user, None)
        db.session.commit()
        response = Response(status=302)
        response.headers["Location"] = link.url
        response.headers["Cache-Control"] = "private, no-store"
        return response

    response = attachment_response(storage, file.storage_key, file.original_name, sha256=file.sha256,
                                   on_mismatch=recheck_later(file.id))
    audit.record("file.downloaded", "evidence_file", file.id, actor_id=user.id)
    db.session.commit()
    return response


@bp.get("/files/<int:file_id>/signed-url")
def signed_url(file_id: int):
    ttl = validate_query(SignedUrlQuery, request.args).ttl
    file, user = _authorised(file_id)
    link = _issue_link(file, user, ttl)
    db.session.commit()
    response = jsonify({"file_id": file.id, "url": link.url, "expires_at": link.expires_at.isoformat(),
                        "ttl": link.ttl})
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/files/signed-urls")
def signed_urls():
    user = _signed_in_user()
    # The session cookie authorises this POST: a text/plain or form body could come from another
    # site without a CORS preflight, so only JSON, which needs one, is taken.
    require_json(request)
    data = read_json(read_limited(request, MAX_BODY_BYTES))
    body = validate(SignedUrlsBody, data, "invalid_parameter",
                    "Send a JSON object with file_ids: a list of 1 to 100 file ids, and optionally ttl.")
    ttl = body.ttl
    urls, errors = [], []
    for file_id in dict.fromkeys(body.file_ids):  # duplicates answered once, order kept
        try:
            file = _visible_file(file_id, user)
            _require_servable(file)
            link = _issue_link(file, user, ttl)
        except DomainError as exc:
            errors.append({"file_id": file_id, "code": exc.code, "message": exc.message})
            continue
        urls.append({"file_id": file_id, "url": link.url, "expires_at": link.expires_at.isoformat(), "ttl": link.ttl})
    db.session.commit()
    response = jsonify({"urls": urls, "errors": errors})
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/files/<int:file_id>/thumbnail")
def thumbnail(file_id: int):
    """Our own re-encoded, EXIF-free JPEG, so it may be shown inline (the portal's detail page)."""
    file, _user = _authorised(file_id)
    if not file.is_image:
        raise NotFound("thumbnail_not_found", "This file has no thumbnail.")
    if file.thumbnail_state == "failed":
        raise Unprocessable("thumbnail_failed", f"No preview: {file.thumbnail_error or 'the image is damaged'}. "
                                                f"The original can still be downloaded.",
                            [{"field": "file", "issue": file.thumbnail_error or "the image is damaged"}])
    if not file.thumbnail_key:
        raise Conflict("thumbnail_not_ready", "The thumbnail is still being made. Try again in a minute.")
    storage = services().storage
    data = b"".join(storage.iter_chunks(file.thumbnail_key))  # <= 512 px: tens of KB
    response = Response(data, mimetype="image/jpeg")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"  # evidence: not left behind in a shared browser
    return response


PREVIEW_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/jpeg", "pdf": "image/png"}


@bp.get("/files/<int:file_id>/preview/<int:page>")
def preview_page(file_id: int, page: int):
    """A preview image this server made (core.evidence.previews): page N (1-based) of a PDF as PNG,
    or page 1 of an image as a larger EXIF-free JPEG. Same access as the file itself, and only
    while the file is servable (clean); never the evidence's own bytes."""
    from core.evidence.previews import page_key

    file, _user = _authorised(file_id)
    if file.ext not in PREVIEW_TYPES:
        raise NotFound("preview_not_found", "This file has no preview image.")
    if file.preview_state is None:
        raise Conflict("preview_not_ready", "The preview is still being made. Try again in a minute.")
    if file.preview_state != "made" or not 1 <= page <= (file.preview_pages or 0):
        raise NotFound("preview_not_found", file.preview_reason or f"This file has no preview page {page}.")
    data = b"".join(services().storage.iter_chunks(page_key(file, page)))  # bounded by the renderer's limits
    response = Response(data, mimetype=PREVIEW_TYPES[file.ext])
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    return response
