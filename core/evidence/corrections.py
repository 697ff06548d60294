"""Corrections after "changes requested": the uploader edits any field of the form (session date
and time, counters, city, note), removes files and adds new ones, then resends. One call, all or
nothing, with the same file guarantees as uploads (core/evidence/uploads.py).

Each resend bumps the submission's revision and writes one audit event `submission.corrected`
with {revision, changes: [{field, old, new}], files_removed: [names], files_added: [names]}: the
reviewer's "what changed since the last revision" and the audit trail both read it. Points are
computed at approval from the submission's (corrected) counters, so nothing else changes here.
The activity cannot change: stored objects are keyed by it (CONTRACT.md storage layout).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone

from core.evidence import uploads
from core.platform import audit
from core.platform.db import db, utcnow
from core.platform.errors import NotFound, ValidationError
from core.platform.models import EvidenceFile, Submission
from core.platform.services import services

log = logging.getLogger(__name__)

SERVABLE_STATES = ("clean",)


@dataclass
class Correction:
    """What the uploader sends. `session_start` is a time of day (UTC) or None; counters by name;
    `remove` the ids of files to drop; `files` new uploads (uploads.IncomingFile)."""
    session_date: date | str | None
    session_start: time | None = None
    city: str | None = None
    note: str = ""
    counters: Mapping = field(default_factory=dict)
    remove: list[int] = field(default_factory=list)
    files: list = field(default_factory=list)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def resend(submission_id: int, user_id: int, change: Correction) -> Submission:
    """Apply the correction and send the submission back: `scanning` when there are new files
    (the scan pipeline moves it to review), else straight to `in_review`.

    Raises NotFound("submission_not_found") for someone else's submission,
    ValidationError("submission_not_editable") unless changes were requested, and the upload
    errors (one {field, issue} per problem: session_date, session_start, counters.<name>, city,
    note, remove, files[i]) otherwise. Commits; on failure nothing is changed or stored.
    """
    s = db.session.get(Submission, submission_id)
    if s is None or s.user_id != user_id:
        raise NotFound("submission_not_found", "This submission does not exist.")
    if s.status not in uploads.RESUBMITTABLE:
        raise ValidationError("submission_not_editable",
                              "A submission can be corrected only when a reviewer has asked for changes.",
                              [{"field": "status", "issue": f"submission is {s.status.replace('_', ' ')}"}])
    problems: list[dict] = []
    day = uploads._check_session_date(change.session_date, problems)
    counters = uploads._check_counters(s.activity, change.counters or {}, problems)
    note = uploads._check_text("note", change.note or "", uploads.MAX_NOTE_CHARS, problems)
    city = uploads._check_text("city", change.city, uploads.MAX_CITY_CHARS, problems) or None
    live = [f for f in s.files if f.deleted_at is None]
    remove_ids = {int(i) for i in change.remove}
    unknown = remove_ids - {f.id for f in live}
    if unknown:
        problems.append({"field": "remove", "issue": "One of the files to remove is not part of this submission."})
    kept = [f for f in live if f.id not in remove_ids]
    for f in kept:
        if f.scan_state not in SERVABLE_STATES + ("pending", "unscanned"):
            problems.append({"field": "remove", "issue": f"{f.original_name} could not be used "
                             f"({f.scan_state}); remove it and add a new copy."})
    if not kept and not change.files:
        problems.append({"field": "files", "issue": "Keep at least one file or add a new one."})
    elif len(kept) + len(change.files) > uploads.MAX_FILES:
        problems.append({"field": "files", "issue": f"Attach at most {uploads.MAX_FILES} files to one submission."})

    start = datetime.combine(day, change.session_start, timezone.utc) if (day and change.session_start) else None
    new_values = {"session_date": day, "session_start": start, "city": city, "note": note,
                  **{f"counters.{k}": v for k, v in counters.items()}}
    removed = [f for f in live if f.id in remove_ids]
    removed_keys = [f.storage_key for f in removed]

    def corrected() -> Submission:
        old_values = {"session_date": s.session_date, "session_start": s.session_start, "city": s.city,
                      "note": s.note, **{f"counters.{k}": (s.counters or {}).get(k) for k in counters}}
        changes = [{"field": k, "old": _text(old_values.get(k)), "new": _text(v)}
                   for k, v in new_values.items() if _text(old_values.get(k)) != _text(v)]
        s.session_date, s.session_start, s.city, s.note = day, start, city, note
        s.counters = dict(counters)
        now = utcnow()
        for f in removed:
            f.mark_deleted(now)
            audit.record("file.removed", "evidence_file", f.id, actor_id=user_id, submission_id=s.id,
                         name=f.original_name)
        s.revision = (s.revision or 1) + 1
        s.reason = None
        ready = not change.files and all(f.scan_state in SERVABLE_STATES or
                                         (f.scan_state == "unscanned" and not services().settings.av_scan_enabled)
                                         for f in kept)
        s.status = "in_review" if ready else "scanning"
        audit.record("submission.corrected", "submission", s.id, actor_id=user_id, revision=s.revision,
                     changes=changes, files_removed=[f.original_name for f in removed],
                     files_added=[uploads.sanitise_filename(f.filename) for f in change.files])
        if ready:
            audit.record("submission.ready_for_review", "submission", s.id)
        return s

    if change.files:
        uploads._spool_and_store(change.files, problems, user_id, corrected, is_new=False)
    else:
        uploads._raise_if_any(problems, [])
        try:
            corrected()
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
    # The rows say "deleted" (never served) once committed; the objects go now, best effort.
    uploads._discard(services().storage, removed_keys)
    return s


def last_correction(trail) -> dict | None:
    """The latest `submission.corrected` event's details from an audit trail, or None."""
    for event in reversed(list(trail)):
        if event.action == "submission.corrected":
            return event.details
    return None
