"""Evidence uploads: validate a submission and its files, store them, record them as pending.

The guarantee: a rejected upload leaves no object and no row. Every file is read once (sized,
hashed; see core/evidence/spooling.py) and typed before the first object is written; objects are written before rows are
flushed; and if storage, the flush or the commit fails, every object written so far is deleted
and the session rolled back. `create_submission` and `add_files` therefore commit themselves.

Decision on PDFs with active content: refused (`pdf_active_content`) when the file, its
compressed object streams included, declares JavaScript or an action that runs by itself
(core/evidence/pdf_active.py); a PDF whose object streams cannot be read within the inflation
budget is refused as `pdf_uncheckable`. Evidence is also only ever served as an attachment with
nosniff and a sandboxing CSP, and clamd scans it. Reviewers open downloads in desktop readers.
"""
from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import BinaryIO

from sqlalchemy import text

from core.platform import audit
from core.platform.db import db
from core.platform.errors import DomainError, NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationError
from core.platform.filenames import sanitise_filename
from core.evidence.filetypes import HEAD_BYTES, check as check_type, ext_of
from core.evidence.images import image_dimensions, image_dimensions_ok
from core.platform.models import EvidenceFile, Submission
from core.platform.queues import enqueue_after_commit
from core.platform.services import services
from core.platform.settings import Settings
from core.evidence import pdf_active
from core.evidence.scan_jobs import IMAGE_EXTS, SCAN_RETRY, SCAN_TIMEOUT_S, scan_job_id, scan_retry  # noqa: F401  (re-exported)
from core.evidence.spooling import Body, TooLarge, UploadSpool, read_once
# Re-exported: core.evidence.corrections checks a correction's fields with these.
from core.evidence.submission_fields import (MAX_AGE_DAYS, MAX_CITY_CHARS, MAX_FILES, MAX_NOTE_CHARS, _check_activity,  # noqa: F401
                                             _check_counters, _check_file_count, _check_session_date, _check_text)

log = logging.getLogger(__name__)

RESUBMITTABLE = ("changes_requested",)
_RAW_MIME = re.compile(r"of type [\w.+-]+/[\w.+-]*[\w+-]")


@dataclass
class IncomingFile:
    """One uploaded file as the door hands it over (werkzeug's FileStorage.stream, its name and
    the Content-Type the client declared, which is recorded but never trusted)."""
    field: str
    filename: str
    stream: BinaryIO
    declared_type: str | None = None


@dataclass
class _Spooled:
    index: int
    name: str  # sanitised, for display and Content-Disposition
    declared_type: str | None
    body: Body | None = None  # set once the file has been read (and passed the size limit)
    ext: str = ""
    content_type: str = ""
    detected: str = ""
    key: str = ""
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))


# -- the public API ---------------------------------------------------------------------------

def create_submission(user_id: int, activity_code: str, session_date: date | str, *,
                      counters: Mapping | None = None, note: str = "", city: str | None = None,
                      session_start: datetime | None = None, files: list[IncomingFile]) -> Submission:
    """Validate everything, store the files, commit the submission (status `scanning`) with one
    pending row per file, then scan files up to INLINE_SCAN_MAX_MB (together) in this request
    (core/evidence/inline_scan.py; they may already be clean, and the submission in review, on
    return) and enqueue a scan after the commit for every other file.

    Raises ValidationError("submission_invalid") with one {field, issue} detail per problem, or,
    when the only problem is one file, that file's own error (file_too_large 413,
    file_type_not_allowed/file_type_mismatch 415, ...). StorageError (503) if the store fails.
    Commits the session; on any failure nothing is left behind.
    """
    problems: list[dict] = []
    activity = _check_activity(activity_code, problems)
    day = _check_session_date(session_date, problems)
    clean_counters = _check_counters(activity, counters or {}, problems)
    note = _check_text("note", note or "", MAX_NOTE_CHARS, problems)
    city = _check_text("city", city, MAX_CITY_CHARS, problems) if city else None
    _check_file_count(len(files), 0, problems)

    def new_submission() -> Submission:
        return Submission(user_id=user_id, activity_code=activity.code, status="scanning", session_date=day,
                          session_start=session_start, city=city, counters=clean_counters, note=note)

    return _spool_and_store(files, problems, user_id, new_submission, is_new=True)


def add_files(submission_id: int, user_id: int, files: list[IncomingFile]) -> Submission:
    """Resubmission after "changes requested": store more files on the uploader's own submission,
    bump its revision and put it back to `scanning`. Same guarantees and errors as
    create_submission; NotFound `submission_not_found` for someone else's submission and
    Conflict-free ValidationError `submission_not_editable` when its status does not allow it."""
    submission = db.session.get(Submission, submission_id)
    if submission is None or submission.user_id != user_id:
        raise NotFound("submission_not_found", "This submission does not exist.")
    if submission.status not in RESUBMITTABLE:
        raise ValidationError("submission_not_editable",
                              "Files can only be added when a reviewer has asked for changes.",
                              [{"field": "files", "issue": f"submission is {submission.status.replace('_', ' ')}"}])
    problems: list[dict] = []
    existing = sum(1 for f in submission.files if f.deleted_at is None)
    _check_file_count(len(files), existing, problems)
    def reopened() -> Submission:
        submission.status = "scanning"
        submission.revision = (submission.revision or 1) + 1
        submission.reason = None
        return submission

    return _spool_and_store(files, problems, user_id, reopened, is_new=False)


def _spool_and_store(files: list[IncomingFile], problems: list[dict], user_id: int,
                     submission: Callable[[], Submission], *, is_new: bool) -> Submission:
    """Read every file once (limit, hash, type), refuse with every problem at once, and only then
    build the submission, store the objects and commit; temp files are closed whatever happens."""
    from core.evidence import inline_scan  # it imports this module

    spooled: list[_Spooled] = []
    try:
        _raise_if_any(problems, _spool_all(files, services().settings, spooled))
        row = submission()
        scan_here, infected = _store_and_commit(row, spooled, user_id, is_new=is_new)
    finally:
        for item in spooled:
            if item.body:
                item.body.close()
    # After the commit, outside the clean-up above: a failed scan or delete deletes nothing else.
    inline_scan.delete_infected(infected)
    if scan_here:
        inline_scan.scan_now(scan_here)
    return row


def servable(file: EvidenceFile, settings: Settings) -> bool:
    """Only `clean`, or `unscanned` while scanning is off; never pending, infected or deleted."""
    if file.deleted_at is not None:
        return False
    if file.scan_state == "clean":
        return True
    return file.scan_state == "unscanned" and not settings.av_scan_enabled


# -- file checks ------------------------------------------------------------------------------

def _spool_all(files: list[IncomingFile], settings: Settings, spooled: list[_Spooled]) -> list[DomainError]:
    """Spool and check every file (nothing is stored yet). Returns one error per bad file."""
    errors: list[DomainError] = []
    for index, incoming in enumerate(files[:MAX_FILES + 1]):
        item = _Spooled(index=index, name=sanitise_filename(incoming.filename), declared_type=incoming.declared_type)
        spooled.append(item)
        try:
            _spool_one(incoming, item, settings)
        except DomainError as exc:
            errors.append(exc)
    return errors


def file_problems(files: list[IncomingFile], room: int = MAX_FILES) -> DomainError | None:
    """Every check create_submission makes of each file (size limit, type by its bytes, image and
    PDF checks) and of their number, storing nothing: the error it would raise for these files
    alone (one file's own error, or `submission_invalid` naming each files[i]), or None when all
    pass. `room`: how many more files the submission takes (MAX_FILES less those it keeps); the
    files past it are left out, named in the limit's message, and not read. For a form refused
    before its files were looked at (a bad date, say), so every problem shows in the same round
    instead of a bad file being dropped without a word. The streams stay seekable for the keep."""
    problems: list[dict] = []
    if len(files) > room:
        names = [sanitise_filename(f.filename) for f in files[room:]]
        left_out = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        problems.append({"field": "files", "issue": f"Attach at most {MAX_FILES} files to one submission; "
                                                    f"left out: {left_out}."})
    spooled: list[_Spooled] = []
    try:
        _raise_if_any(problems, _spool_all(files[:room], services().settings, spooled))
    except DomainError as exc:
        return exc
    finally:
        for item in spooled:
            if item.body:
                item.body.close()
    return None


def _spool_one(incoming: IncomingFile, item: _Spooled, settings: Settings) -> None:
    where = f"files[{item.index}]"
    try:
        # Only a name ending in .pdf can pass as a PDF, so only those pay for the active-content scan.
        item.body = body = read_once(incoming.stream, settings.max_upload_bytes, pdf=ext_of(incoming.filename) == "pdf")
    except TooLarge:
        raise PayloadTooLarge("file_too_large", f"{item.name} is larger than the {settings.max_upload_mb} MB limit.",
                              [{"field": where, "issue": f"larger than {settings.max_upload_mb} MB"}]) from None
    head = body.stream.read(HEAD_BYTES)
    body.stream.seek(0)
    try:
        typed = check_type(incoming.filename, head, settings.allowed_file_types, field=where)
    except DomainError as exc:
        # Name the file (several may be refused at once) and never show a bare MIME type.
        exc.message = f"{item.name}: " + _RAW_MIME.sub("in a format we do not recognise", exc.message)
        exc.args = (exc.message,)
        raise
    item.ext, item.content_type, item.detected = typed.ext, typed.content_type, typed.detected
    if item.ext in IMAGE_EXTS:
        _check_image(item, where)
    if item.ext == "pdf":
        # The streaming pass's raw-byte check first (free); then the second pass that also reads
        # inside compressed streams and judges automatic actions (core/evidence/pdf_active.py).
        finding = (pdf_active.Finding("pdf_active_content", f"PDF names a /{body.pdf_action} action")
                   if body.pdf_action else pdf_active.find(body.stream, body.size))
        if finding and finding.code == "pdf_active_content":
            raise UnsupportedMediaType("pdf_active_content",
                                       f"{item.name} contains scripts or actions that run by themselves, which are not "
                                       f"accepted in evidence. Print it to a new PDF and upload that instead.",
                                       [{"field": where, "issue": finding.reason}])
        if finding:
            raise UnsupportedMediaType("pdf_uncheckable",
                                       f"{item.name} could not be checked for scripts. Print it to a new PDF and "
                                       f"upload that instead.",
                                       [{"field": where, "issue": finding.reason}])


def _check_image(item: _Spooled, where: str) -> None:
    from PIL import Image  # only images pay for Pillow

    if not image_dimensions_ok(item.body.stream):
        size = image_dimensions(item.body.stream)
        if size is None:
            raise ValidationError("image_unreadable", f"{item.name} is damaged or is not a real picture.",
                                  [{"field": where, "issue": "image header unreadable"}])
        raise ValidationError("image_too_large",
                              f"{item.name} is {size[0]}x{size[1]} pixels, which is too large to process.",
                              [{"field": where, "issue": f"{size[0]}x{size[1]} pixels"}])
    try:
        # verify() walks the chunk structure (CRCs, truncation) without decoding pixels.
        with Image.open(item.body.stream, formats=["JPEG", "PNG"]) as im:
            im.verify()
    except Exception as exc:  # Pillow raises many types on damaged input
        raise ValidationError("image_unreadable", f"{item.name} is damaged or is not a real picture.",
                              [{"field": where, "issue": f"image does not decode: {type(exc).__name__}"}]) from None
    finally:
        item.body.stream.seek(0)


def _raise_if_any(problems: list[dict], file_errors: list[DomainError]) -> None:
    if not problems and len(file_errors) == 1:
        raise file_errors[0]  # its own code and status (413, 415...) says most
    if not problems and not file_errors:
        return
    details = list(problems)
    for exc in file_errors:
        for d in exc.details or [{"field": "files", "issue": exc.message}]:
            details.append({**d, "code": exc.code, "message": exc.message})
    raise ValidationError("submission_invalid", "Some fields need attention; see each message.", details)


# -- storing ----------------------------------------------------------------------------------

def _store_and_commit(submission: Submission, spooled: list[_Spooled], user_id: int, *,
                      is_new: bool) -> tuple[list[int], list[tuple[int, str]]]:
    """Store, insert and commit; queue a scan after the commit for each file not scanned in the
    request (core/evidence/inline_scan.py). A new submission's files within the limit are scanned
    before the commit and their verdicts committed with the upload. Returns the ids of the files
    to scan after the commit (files added to an existing submission) and the (id, key) of
    infected files whose objects are deleted after the commit."""
    from core.evidence import inline_scan

    svc = services()
    storage = svc.storage
    inline = inline_scan.chosen([item.body.size for item in spooled], svc.settings)
    scan_here: list[int] = []
    written: list[str] = []
    try:
        adopted: dict[int, object] = {}
        for item, here in zip(spooled, inline):
            item.key = f"evidence/{user_id}/{submission.activity_code}/{item.uuid}.{item.ext}"
            disk = item.body.stream.disk_file() if isinstance(item.body.stream, UploadSpool) else None
            if disk is not None:
                # The spool on the storage's disk becomes the object: no copy (Storage.adopt).
                if storage.adopt(item.key, disk, item.body.size, item.content_type):
                    adopted[item.index] = disk
                    if is_new and here and item.ext == "csv":
                        # Scanned and tabled in this request: no job reads it soon (an image's
                        # thumbnail and preview jobs, a queued scan would, within seconds).
                        item.body.stream.release_on_close()
            else:
                item.body.stream.seek(0)
                storage.put(item.key, item.body.stream, item.body.size, item.content_type)
            written.append(item.key)
        before = [item for item, here in zip(spooled, inline) if here and is_new]
        outcomes = dict(zip((item.index for item in before), inline_scan.scan_stored(
            [(item.key, item.body.size, item.body.sha256, adopted.get(item.index)) for item in before])))
        # One flush inserts the submission, every row (batched) and the audit events: round trips
        # stay the same whatever the number of files. A new submission's rows take their ids up
        # front (_take_ids), so they are inserted at the commit with their verdicts, not updated.
        rows = [EvidenceFile(uuid=item.uuid, submission=submission, user_id=user_id,
                             activity_code=submission.activity_code, storage_key=item.key,
                             original_name=item.name[:255], ext=item.ext, content_type=item.content_type,
                             size_bytes=item.body.size, sha256=item.body.sha256, scan_state="pending")
                for item in spooled]
        db.session.add(submission)
        if not (is_new and _take_ids(submission, rows)):
            db.session.flush()
        if is_new:
            audit.record("submission.created", "submission", submission.id, actor_id=user_id,
                         activity_code=submission.activity_code, files=len(spooled))
        else:
            audit.record("submission.files_added", "submission", submission.id, actor_id=user_id,
                         revision=submission.revision, files=len(spooled))
        settled = []
        for item, row, here in zip(spooled, rows, inline):
            audit.record("file.uploaded", "evidence_file", row.id, actor_id=user_id, submission_id=submission.id,
                         name=row.original_name, size=row.size_bytes, sha256=row.sha256, ext=row.ext,
                         detected_type=item.detected, declared_type=item.declared_type)
            if item.index in outcomes:
                settled.append((row, outcomes[item.index], item.body.stream))
            elif here:
                scan_here.append(row.id)
            else:
                enqueue_after_commit("scans", "jobs.scans.scan_file", row.id, retry=scan_retry(),
                                     job_id=scan_job_id(row.id), timeout=SCAN_TIMEOUT_S)
        infected = inline_scan.settle(submission, settled)
        db.session.commit()
        return scan_here, infected
    except BaseException:
        db.session.rollback()
        _discard(storage, written)
        raise


def _take_ids(submission: Submission, rows: list[EvidenceFile]) -> bool:
    """On PostgreSQL, give a new submission and its file rows their ids from the tables' own
    sequences, in one round trip; True when done. The audit events and verdicts that name them can
    then be recorded before anything is flushed, and the commit's one flush inserts every row as
    final: no early flush, no UPDATE of the submission and its files afterwards (two statements
    and a unit of work fewer per upload; docs/performance.md). False on other databases (SQLite
    for `make run`), where the caller flushes to learn the ids."""
    if db.session.get_bind().dialect.name != "postgresql":
        return False
    with db.session.no_autoflush:  # an autoflush here would insert the submission under another id
        submission_id, file_ids = db.session.execute(text(
            "SELECT nextval(pg_get_serial_sequence('submissions', 'id')), "
            "ARRAY(SELECT nextval(pg_get_serial_sequence('evidence_files', 'id')) FROM generate_series(1, :n))"),
            {"n": len(rows)}).one()
    submission.id = submission_id
    for row, file_id in zip(rows, file_ids):
        row.id = file_id
    return True


def _discard(storage, keys: list[str]) -> None:
    """Best effort: the caller's error is the one that matters, so failures here are logged."""
    if not keys:
        return
    try:
        failed = storage.delete_many(keys)
    except Exception:
        log.exception("could not delete objects of a failed upload", extra={"keys": keys})
        return
    if failed:
        log.error("objects of a failed upload were left behind", extra={"keys": failed})
