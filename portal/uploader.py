"""Uploader pages: a new submission, "My submissions" with points and badges, one submission's
status and reasons, and resubmission after changes are requested. Usable without JavaScript."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.datastructures import CombinedMultiDict, FileStorage, MultiDict
from sqlalchemy import inspect, select
from sqlalchemy.orm import selectinload

from core.evidence import uploads as evidence
from core.points import ledger
from core.review.queue_query import keyset_page
from core.platform.db import db
from core.platform.errors import DomainError, NotFound
from core.platform.filenames import sanitise_filename
from core.platform.numbers import parse_id
from core.platform.models import Badge, Submission, UserBadge
from core.review.reviewing import SCAN_WORDS, STATUS_WORDS
from portal.blueprint import bp
from portal.access import signed_in_required
from core.evidence import corrections, pending
from portal.forms import choices, correction_form_class
from portal.submission_form import evidence_form

MY_PAGE_SIZE = 50  # newest first; "Older submissions" pages on by keyset (created_at, id)

# What the uploader should do next, per status, in plain words.
NEXT_STEP = {
    "scanning": "We are checking your files for viruses. This usually takes a minute.",
    "in_review": "A reviewer will look at it soon.",
    "changes_requested": "A reviewer asked for changes. Read the reason and resubmit.",
    "approved": "Done. What it earned (below) is in your total.",
    "rejected": "This submission was not accepted. The reason is below.",
    "revoked": "An administrator withdrew this approval and its points.",
}


def _incoming(field) -> list[evidence.IncomingFile]:
    # Browsers send one empty part when no file is chosen; that is "no files", not a nameless file.
    # A plain text part named "files" (no browser sends one) is not a file either.
    return [evidence.IncomingFile(f"files[{i}]", fs.filename, fs.stream, fs.mimetype)
            for i, fs in enumerate(f for f in (field.data or []) if isinstance(f, FileStorage) and f.filename)]


def attach_errors(form, exc: DomainError, field_names: dict[str, str]) -> None:
    """Put each {field, issue} detail next to its control; what has no control goes on top."""
    placed = False
    for detail in exc.details or []:
        key = str(detail.get("field", ""))
        base = "files" if key.startswith("files") else key
        target = getattr(form, field_names.get(base, base.replace(".", "_")), None)
        issue = detail.get("issue")
        if base == "files":
            # A file's own error reads as a sentence naming the file ("x.csv is larger than...").
            issue = detail.get("message") or (exc.message if exc.code != "submission_invalid" else issue)
        if target is not None and hasattr(target, "errors"):
            target.errors = list(target.errors) + [str(issue or exc.message)]
            placed = True
    if not placed:
        target = getattr(form, "files", None)
        if target is not None:
            target.errors = list(target.errors) + [exc.message]
        else:
            flash(exc.message, "error")


def _bad_files(exc: DomainError | None) -> set[int]:
    """Indexes i of the files[i] an error names."""
    bad = set()
    for detail in (exc.details if exc is not None else None) or []:
        match = re.fullmatch(r"files\[(\d+)\]", str(detail.get("field", "")))
        if match:
            bad.add(int(match.group(1)))
    return bad


def room_for(kept: list, existing: int = 0) -> int:
    """How many newly chosen files a submission takes beside the `kept` files of a last try and
    the `existing` files it keeps (corrections): past it, files are left out, neither kept nor
    asked for again, so the retry the page invites fits the limit."""
    return max(0, evidence.MAX_FILES - existing - len(kept))


def files_to_choose_again(field, exc: DomainError | None = None, kept: list | None = None,
                          room: int = evidence.MAX_FILES) -> list[str]:
    """The names of the files the refused form carried that were fine (not named by a files[i]
    error), within `room` (room_for), and were not kept for the retry: a browser cannot keep
    chosen files across a refused form, so the page lists exactly which to choose again. Bad files
    have their own message; those past the room are named in the limit's."""
    names = [fs.filename for fs in (field.data or []) if isinstance(fs, FileStorage) and fs.filename][:room]
    kept_names = [k.original_name for k in kept or []]
    out = []
    for i, name in enumerate(names):
        clean = sanitise_filename(name)
        if i in _bad_files(exc):
            continue
        if clean in kept_names:
            kept_names.remove(clean)
            continue
        out.append(clean)
    return out


def _keep_good(activity_code: str | None, incoming: list[evidence.IncomingFile], exc: DomainError | None,
               room: int) -> list:
    """After a refusal: keep the new files that were fine (pending uploads), within `room`
    (room_for), for the retry."""
    bad = _bad_files(exc)
    good = [f for i, f in enumerate(incoming[:room]) if i not in bad]
    for f in good:
        try:
            f.stream.seek(0)
        except (OSError, ValueError):  # a stream that cannot rewind is chosen again instead
            return []
    return pending.keep(current_user.id, activity_code, good)


@bp.route("/submissions/new", methods=["GET", "POST"])
@signed_in_required
def new_submission():
    built, loaded = evidence_form()  # `loaded` kept: the domain's check finds its activity in the session
    activities = built.activities
    form = built.form_class()
    form.activity_code.choices = list(built.activity_choices)
    status = 200
    rechoose: list[str] = []
    kept: list = []
    if request.method == "POST":
        kept = pending.load(current_user.id, request.form.getlist("keep"))  # good files of the last try
        incoming = _incoming(form.files)
        error: DomainError | None = None
        if form.validate():
            activity = next(a for a in activities if a.code == form.activity_code.data)
            counters = {spec["name"]: getattr(form, f"counter_{spec['name']}").data or 0
                        for spec in activity.counters or []}
            session_start = None
            if form.session_start.data:
                session_start = datetime.combine(form.session_date.data, form.session_start.data, timezone.utc)
            again = pending.as_incoming(kept, len(incoming))
            try:
                submission = evidence.create_submission(
                    current_user.id, activity.code, form.session_date.data, counters=counters,
                    note=form.note.data or "", city=(form.city.data or "").strip() or current_user.city,
                    session_start=session_start, files=incoming + again)
            except DomainError as exc:
                error = exc
                attach_errors(form, exc, {"counters.peers": "counter_peers", "counters.students": "counter_students"})
                # A part that is down (storage: 503) is not the form's fault: say so, and when to retry.
                status = exc.status if 400 <= exc.status < 500 or exc.status == 503 else 400
            else:
                # The identity key outlives the commit; reading .id would reload the expired row.
                (submission_id,) = inspect(submission).identity
                pending.discard(kept)
                # What happens next depends on what the scan already said (in this request or
                # later): the page's status and its next step say it (NEXT_STEP), not the flash.
                flash(f"Submission {submission_id} sent.", "success")
                return redirect(url_for("portal.my_submission", submission_id=submission_id))
            finally:
                for f in again:
                    f.stream.close()
        else:
            status = 400
            # The fields were refused before any file was read: name the bad files now too.
            error = evidence.file_problems(incoming, room_for(kept))
            if error is not None:
                attach_errors(form, error, {})
        room = room_for(kept)
        new_kept = _keep_good(form.activity_code.data, incoming, error, room)
        kept = pending.load(current_user.id, [k.id for k in kept] + [k.id for k in new_kept])
        rechoose = files_to_choose_again(form.files, error, new_kept, room)
        flash("Some fields need attention; see the messages next to them.", "error")
    counter_fields = [(a, [getattr(form, f"counter_{c['name']}") for c in a.counters or []])
                      for a in activities if a.counters]
    return (render_template("portal/uploader/new.html", form=form, activities=activities,
                            counter_fields=counter_fields, rechoose=rechoose, kept=kept),
            status, {"Retry-After": "5"} if status == 503 else {})


@bp.get("/submissions")
@signed_in_required
def my_submissions():
    after = request.args.get("after", "")
    query = (select(Submission).where(Submission.user_id == current_user.id)
             .options(selectinload(Submission.files)))  # one query, not one per row
    try:
        rows, next_cursor = keyset_page(query, Submission.created_at, after, descending=True,
                                        page_size=MY_PAGE_SIZE)
    except DomainError as exc:
        flash(exc.message, "error")
        return redirect(url_for("portal.my_submissions"))
    totals = ledger.user_totals(current_user.id)
    badges = db.session.execute(select(Badge.name, Badge.description, UserBadge.awarded_at)
                                .join(UserBadge, UserBadge.badge_code == Badge.code)
                                .where(UserBadge.user_id == current_user.id).order_by(UserBadge.awarded_at)).all()
    return render_template("portal/uploader/list.html", submissions=rows, totals=totals, badges=badges,
                           status_words=STATUS_WORDS, scan_words=SCAN_WORDS, next_cursor=next_cursor,
                           first_page=not after)


def _own(submission_id: int) -> Submission:
    submission = db.session.get(Submission, submission_id)
    # Someone else's submission is "not found", so ids cannot be probed.
    if submission is None or submission.user_id != current_user.id:
        raise NotFound("submission_not_found", "There is no such submission among yours.")
    return submission


def _with_current_values(submission: Submission) -> CombinedMultiDict:
    """The posted form, where a field that was not sent at all keeps its current value (a client
    that only adds files need not repeat the rest). A field sent empty is empty."""
    current = MultiDict({"session_date": submission.session_date.isoformat(), "city": submission.city or "",
                         "note": submission.note or "",
                         "session_start": submission.session_start.strftime("%H:%M") if submission.session_start else "",
                         **{f"counter_{k}": str(v) for k, v in (submission.counters or {}).items()}})
    missing = MultiDict([(k, v) for k, v in current.items(multi=True) if k not in request.form])
    return CombinedMultiDict([request.form, missing, request.files])


def _correction_form(submission: Submission, formdata=None):
    """The correction form for this submission; on GET it is filled with the current values."""
    form_class = correction_form_class(submission.activity)
    if formdata is not None:
        form = form_class(formdata=formdata)
    else:
        values = {"session_date": submission.session_date, "city": submission.city or "", "note": submission.note or "",
                  "session_start": submission.session_start.time() if submission.session_start else None,
                  **{f"counter_{k}": v for k, v in (submission.counters or {}).items()}}
        form = form_class(formdata=None, data=values)  # not the request: a GET shows what is stored
    form.remove.choices = choices((str(f.id), f.original_name) for f in submission.files if f.deleted_at is None)
    return form


def _detail(submission: Submission, form=None, status: int = 200, rechoose: list[str] | None = None,
            kept: list | None = None):
    if form is None and submission.status == "changes_requested":
        form = _correction_form(submission)
    return render_template("portal/uploader/detail.html", s=submission, form=form,
                           counter_fields=[getattr(form, f"counter_{c['name']}") for c in submission.activity.counters or []]
                           if form is not None else [],
                           live=[f for f in submission.files if f.deleted_at is None], rechoose=rechoose or [],
                           kept=kept or [],
                           status_words=STATUS_WORDS, scan_words=SCAN_WORDS, next_step=NEXT_STEP), status


@bp.get("/submissions/<int:submission_id>")
@signed_in_required
def my_submission(submission_id: int):
    return _detail(_own(submission_id))


@bp.post("/submissions/<int:submission_id>/resubmit")
@signed_in_required
def resubmit(submission_id: int):
    """Corrections after "changes requested": every field, files removed and added, one POST."""
    submission = _own(submission_id)
    if submission.status != "changes_requested":
        flash("This submission can be corrected only when a reviewer has asked for changes; nothing was changed.",
              "error")
        return _detail(submission, None, 400)
    form = _correction_form(submission, formdata=_with_current_values(submission))
    kept = pending.load(current_user.id, request.form.getlist("keep"))  # good files of the last try
    incoming = _incoming(form.files)
    error: DomainError | None = None
    fields_ok = form.validate_on_submit()
    if fields_ok:
        again = pending.as_incoming(kept, len(incoming))
        change = corrections.Correction(
            session_date=form.session_date.data, session_start=form.session_start.data, city=form.city.data,
            note=form.note.data or "", remove=[n for n in map(parse_id, map(str, form.remove.data or [])) if n is not None],
            counters={c["name"]: getattr(form, f"counter_{c['name']}").data or 0
                      for c in submission.activity.counters or []},
            files=incoming + again)
        try:
            corrections.resend(submission.id, current_user.id, change)
        except DomainError as exc:
            error = exc
            db.session.rollback()
        else:
            pending.discard(kept)
            flash("Resubmitted with your corrections. The reviewer sees what you changed.", "success")
            return redirect(url_for("portal.my_submission", submission_id=submission_id))
        finally:
            for f in again:
                f.stream.close()
    submission = _own(submission_id)
    removing = {n for n in map(parse_id, map(str, form.remove.data or [])) if n is not None}
    room = room_for(kept, sum(1 for f in submission.files if f.deleted_at is None and f.id not in removing))
    if not fields_ok:
        error = evidence.file_problems(incoming, room)  # as on the new-submission form
    form.remove.choices = choices((str(f.id), f.original_name) for f in submission.files if f.deleted_at is None)
    if error is not None:
        attach_errors(form, error, {f"counters.{c['name']}": f"counter_{c['name']}"
                                    for c in submission.activity.counters or []})
    new_kept = _keep_good(submission.activity_code, incoming, error, room)
    kept = pending.load(current_user.id, [k.id for k in kept] + [k.id for k in new_kept])
    flash("Some fields need attention; see the messages next to them.", "error")
    # A file's own status (413, 415) only when it is the one problem; with refused fields, 400.
    status = error.status if fields_ok and error is not None and 400 <= error.status < 500 else 400
    return _detail(submission, form, status, files_to_choose_again(form.files, error, new_kept, room), kept)


@bp.get("/submissions/<int:submission_id>/status.json")
@signed_in_required
def submission_status(submission_id: int):
    """What static/live-status.js polls while files are scanned: {id, status, status_word,
    next_step, scanning, files: [{id, scan_state, word}]}. `scanning` false means: stop polling."""
    s = _own(submission_id)
    body = {"id": s.id, "status": s.status, "status_word": STATUS_WORDS.get(s.status, s.status),
            "next_step": NEXT_STEP.get(s.status, ""), "scanning": s.status == "scanning",
            "files": [{"id": f.id, "scan_state": f.scan_state, "word": SCAN_WORDS.get(f.scan_state, f.scan_state)}
                      for f in s.files if f.deleted_at is None]}
    return body, 200, {"Cache-Control": "no-store"}
