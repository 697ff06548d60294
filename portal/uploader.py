"""Uploader pages: a new submission, "My submissions" with points and badges, one submission's
status and reasons, and resubmission after changes are requested. Usable without JavaScript."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import inspect, select
from sqlalchemy.orm import selectinload

from core.evidence import uploads as evidence
from core.points import ledger
from core.review import reviewing as review
from core.platform.db import db
from core.platform.errors import DomainError, NotFound
from core.platform.models import Activity, Badge, Submission, UserBadge
from core.review.reviewing import SCAN_WORDS, STATUS_WORDS
from portal.blueprint import bp
from portal.access import signed_in_required
from portal.forms import ResubmitForm, choices, submission_form_class

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


def _evidence_activities() -> list[Activity]:
    return list(db.session.scalars(select(Activity).where(Activity.active.is_(True), Activity.source == "evidence")
                                   .order_by(Activity.name)))


def _incoming(field) -> list[evidence.IncomingFile]:
    # Browsers send one empty part when no file is chosen; that is "no files", not a nameless file.
    return [evidence.IncomingFile(f"files[{i}]", fs.filename, fs.stream, fs.mimetype)
            for i, fs in enumerate(f for f in (field.data or []) if f and f.filename)]


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


@bp.route("/submissions/new", methods=["GET", "POST"])
@signed_in_required
def new_submission():
    activities = _evidence_activities()
    form = submission_form_class(activities)()
    form.activity_code.choices = choices([("", "Choose an activity")] + [(a.code, f"{a.name} ({a.code})") for a in activities])
    status = 200
    if request.method == "POST":
        if form.validate():
            activity = next(a for a in activities if a.code == form.activity_code.data)
            counters = {spec["name"]: getattr(form, f"counter_{spec['name']}").data or 0
                        for spec in activity.counters or []}
            session_start = None
            if form.session_start.data:
                session_start = datetime.combine(form.session_date.data, form.session_start.data, timezone.utc)
            try:
                submission = evidence.create_submission(
                    current_user.id, activity.code, form.session_date.data, counters=counters,
                    note=form.note.data or "", city=(form.city.data or "").strip() or current_user.city,
                    session_start=session_start, files=_incoming(form.files))
            except DomainError as exc:
                attach_errors(form, exc, {"counters.peers": "counter_peers", "counters.students": "counter_students"})
                status = exc.status if 400 <= exc.status < 500 else 400
            else:
                # The identity key outlives the commit; reading .id would reload the expired row.
                (submission_id,) = inspect(submission).identity
                flash(f"Submission {submission_id} sent. We are checking the files; it goes to review after that.",
                      "success")
                return redirect(url_for("portal.my_submission", submission_id=submission_id))
        else:
            status = 400
        flash("Some fields need attention; see the messages next to them.", "error")
    counter_fields = [(a, [getattr(form, f"counter_{c['name']}") for c in a.counters or []])
                      for a in activities if a.counters]
    return render_template("portal/uploader/new.html", form=form, activities=activities,
                           counter_fields=counter_fields), status


@bp.get("/submissions")
@signed_in_required
def my_submissions():
    after = request.args.get("after", "")
    query = (select(Submission).where(Submission.user_id == current_user.id)
             .options(selectinload(Submission.files)))  # one query, not one per row
    try:
        rows, next_cursor = review.keyset_page(query, Submission.created_at, after, descending=True,
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


@bp.get("/submissions/<int:submission_id>")
@signed_in_required
def my_submission(submission_id: int):
    submission = _own(submission_id)
    return render_template("portal/uploader/detail.html", s=submission, form=ResubmitForm(),
                           status_words=STATUS_WORDS, scan_words=SCAN_WORDS, next_step=NEXT_STEP)


@bp.post("/submissions/<int:submission_id>/resubmit")
@signed_in_required
def resubmit(submission_id: int):
    submission = _own(submission_id)
    form = ResubmitForm()
    if form.validate_on_submit():
        try:
            evidence.add_files(submission.id, current_user.id, _incoming(form.files))
        except DomainError as exc:
            attach_errors(form, exc, {})
            return render_template("portal/uploader/detail.html", s=submission, form=form,
                                   status_words=STATUS_WORDS, scan_words=SCAN_WORDS, next_step=NEXT_STEP), \
                (exc.status if 400 <= exc.status < 500 else 400)
        flash("Resubmitted. We are checking the new files; it goes back to review after that.", "success")
    return redirect(url_for("portal.my_submission", submission_id=submission.id))
