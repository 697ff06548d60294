"""Reviewer pages: the queue with filters and bulk decisions, a submission's detail page, claims
and decisions. Every change is a POST form with CSRF, answered with a redirect (PRG); conflicts
become a flash message and change nothing."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.datastructures import MultiDict

from core.notifications import messages as notify
from core.platform import audit
from core.evidence import duplicates, previews
from core.points import worth
from core.platform.services import services
from core.review import approvals, flow, queue_marks, queue_query
from core.review import reviewing as review
from core.platform.db import db
from core.platform.errors import Conflict, DomainError, NotFound
from core.platform.numbers import parse_id
from core.platform.web import holds_control_characters
from core.platform.models import SUBMISSION_STATES, Activity, EvidenceFile, Submission, User
from portal.blueprint import bp
from portal.access import admin_required, reviewer_required
from portal.forms import ActionForm, BulkForm, DecisionForm, QueueFilterForm, RevokeForm, choices
from portal.outcomes import refused


def _filters_from(form: QueueFilterForm, after: str | None = None) -> queue_query.QueueFilters:
    return queue_query.QueueFilters(
        status=form.status.data if form.status.data in SUBMISSION_STATES else "in_review",
        activity=form.activity.data or "", uploader=(form.uploader.data or "").strip(),
        date_from=form.date_from.data, date_to=form.date_to.data, claimed_by_me=bool(form.mine.data),
        reviewed_by_me=bool(form.reviewed.data), sort=form.sort.data or "oldest",
        after=request.args.get("after", "") if after is None else after)


def queue_form(args: MultiDict | None = None) -> QueueFilterForm:
    form = QueueFilterForm(request.args if args is None else args)
    form.status.choices = choices((s, review.STATUS_WORDS[s]) for s in SUBMISSION_STATES)
    codes = db.session.scalars(select(Activity.code).order_by(Activity.code)).all()
    form.activity.choices = choices([("", "Any activity")] + [(c, c) for c in codes])
    if not form.status.data:
        form.status.data = "in_review"
    return form


@bp.get("/review")
@reviewer_required
def queue():
    return _queue_page(request.args, BulkForm())


def _queue_page(query: MultiDict, bulk: BulkForm, status: int = 200, picked: frozenset[int] = frozenset(),
                back: str | None = None):
    """The queue under the filters in `query` (the page's own query string, or, after a refused
    bulk decision, the one it was sent from), with `bulk` (and its errors) in its form."""
    form = queue_form(query)
    form.validate()  # unknown values fall back to defaults; messages show next to the fields
    filters = _filters_from(form, query.get("after", ""))
    try:
        page = queue_query.queue(filters, current_user.id)
    except DomainError as exc:
        flash(exc.message, "error")
        filters.after = ""
        page = queue_query.queue(filters, current_user.id)
    args = {k: v for k, v in query.items() if k != "after"}
    ids = [s.id for s in page.items]
    queue_qs = urlencode(args)[:QS_MAX]
    return render_template("portal/review/queue.html", form=form, page=page, filters=filters, args=args,
                           bulk=bulk, status_words=review.STATUS_WORDS, count_cap=queue_query.COUNT_CAP,
                           bulk_max=review.BULK_MAX, queue_qs=queue_qs,
                           detail_href=_detail_href(queue_qs), queue_href=_queue_href(args),
                           kinds=queue_marks.file_kinds(ids), reused=queue_marks.reused(ids), picked=picked,
                           back=back or request.full_path), status


def _detail_href(queue_qs: str):
    """id -> the detail page's URL with the queue's filters in `q`, for every row of the page.
    url_for once, not per row: building 50 URLs took a quarter of the page's rendering."""
    path, _, query = url_for("portal.review_detail", submission_id=1, q=queue_qs or None).partition("?")
    prefix, suffix = path.rsplit("/", 1)[0], "?" + query if query else ""
    return lambda submission_id: f"{prefix}/{submission_id}{suffix}"


def _queue_href(args: dict[str, str]):
    """(**changes: str) -> the queue's URL with the page's filters `args` and these changes,
    encoded as url_for encodes a query. One url_for a page, not eight (the status links and the
    pager were about 5% of the page's CPU), and the query's keys stay data: url_for took
    `_method`, `_anchor` or `_external` in them as its own options (`/review?_method=POST` was a
    500)."""
    path = url_for("portal.queue")

    def href(**changes: str) -> str:
        query = urlencode(list({**args, **changes}.items()), safe=URL_SAFE)
        return f"{path}?{query}" if query else path
    return href


URL_SAFE = "!$'()*,/:;?@"  # what Werkzeug's url_for leaves unquoted in a query (werkzeug.urls._urlencode)


@bp.post("/review/bulk")
@reviewer_required
def bulk_decide():
    form = BulkForm()
    back = request.form.get("back") or ""
    # A path of ours, without CR/LF or other controls (a redirect header cannot carry them: a 500
    # after the decision was committed); anything else returns to the queue.
    if not back.startswith("/review") or holds_control_characters(back) or any(c in back for c in "\r\n\t"):
        back = url_for("portal.queue")
    if not form.validate_on_submit():
        flash("The form could not be read; nothing was changed.", "error")
        return redirect(back)
    action = "approve" if form.approve.data else "reject"
    ids = list(dict.fromkeys(n for n in map(parse_id, request.form.getlist("submission_ids")) if n is not None))
    try:
        outcome = review.decide_many(ids, current_user.id, action, form.reason.data)
    except DomainError as exc:
        if exc.code != "reason_required":
            return refused(exc, back)
        db.session.rollback()  # the queue again, the error at the reason, the selection kept
        form.reason.errors = ["Give a reason for rejecting: every uploader sees it."]
        return _queue_page(MultiDict(_queue_pairs(urlsplit(back).query)), form, 400,
                           frozenset(ids), back)
    notify.for_decisions(outcome.done)  # e-mails go out after this commit, never before
    db.session.commit()
    verb = "Approved" if action == "approve" else "Rejected"
    if outcome.done:
        extra = f", {outcome.points:+d} points in total" if action == "approve" else ""
        flash(f"{verb} {len(outcome.done)} submission(s){extra}.", "success")
    for submission_id, message in outcome.failed:
        flash(f"Submission {submission_id} was not changed: {message}", "error")
    return redirect(back)


# The detail page's files with their CSV tables in one query (the column is deferred: one SELECT
# per CSV otherwise).
_FILES_WITH_TABLES = selectinload(Submission.files).undefer(EvidenceFile.preview_table)


def _submission(submission_id: int, *options) -> Submission:
    submission = db.session.get(Submission, submission_id, options=options)
    if submission is None:
        raise NotFound("submission_not_found", f"There is no submission {submission_id}.")
    return submission


QS_MAX = 1000  # a queue's filters as a query string; anything longer is not one of ours


def _queue_pairs(raw: str | None) -> list[tuple[str, str]]:
    """A queue's query string carried inside a parameter (`q`, `queue`, `back`), as pairs. It is
    decoded once more, past the request's control-character check (core.platform.web), so pairs
    holding one are dropped here: no queue form makes them, and PostgreSQL refuses NUL (a 500)."""
    return [(k, v) for k, v in parse_qsl((raw or "")[:QS_MAX]) if not holds_control_characters(k + v)]


def _queue_qs(raw: str | None) -> str:
    """The queue a detail page was opened from, as its query string (filters and sort, no cursor)."""
    return urlencode([(k, v) for k, v in _queue_pairs(raw) if k != "after"])


def _queue_filters(qs: str) -> queue_query.QueueFilters:
    """QueueFilters from a queue query string, read by the queue's own form (bad values: defaults)."""
    form = QueueFilterForm(formdata=MultiDict(parse_qsl(qs)))
    filters = _filters_from(form)
    filters.after = ""
    return filters


def _detail(s: Submission, decision: DecisionForm, qs: str, status: int = 200):
    trail = audit.trail("submission", s.id)
    actor_ids = {e.actor_id for e in trail if e.actor_id}
    actors = {u.id: u.email for u in db.session.scalars(select(User).where(User.id.in_(actor_ids)))} if actor_ids else {}
    distance = services().settings.near_duplicate_distance
    live = [f for f in s.files if f.deleted_at is None]
    tables = {f.id: previews.read_table(f) for f in live if f.ext == "csv" and f.scan_state == "clean"}
    near = {f.id: duplicates.near_matches(f, distance) for f in live}
    exact = {f.id: duplicates.exact_repeats(f) for f in live}
    prev_id, next_id = flow.neighbours(_queue_filters(qs), s, current_user.id)
    value = worth.approval_worth(s) if s.status == "in_review" else None
    decision.queue.data = qs
    return render_template(
        "portal/review/detail.html", s=s, holder=review.holder(s), earlier=review.earlier_submissions(s),
        hints=review.hints(s), trail=trail, actors=actors, decision=decision, action=ActionForm(),
        revoke=RevokeForm(), status_words=review.STATUS_WORDS, scan_words=review.SCAN_WORDS, tables=tables,
        near=near, exact=exact, distance=distance, prev_id=prev_id, next_id=next_id, qs=qs, worth=value,
        earned=approvals.points_earned([s]).get(s.id)), status


@bp.get("/review/<int:submission_id>")
@reviewer_required
def review_detail(submission_id: int):
    return _detail(_submission(submission_id, _FILES_WITH_TABLES), DecisionForm(), _queue_qs(request.args.get("q")))


@bp.post("/review/<int:submission_id>/claim")
@reviewer_required
def claim(submission_id: int):
    try:
        s = review.claim(submission_id, current_user.id)
    except Conflict as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        db.session.commit()
        flash(f"You are reviewing submission {s.id} until {s.claim_expires_at:%H:%M} UTC.", "success")
    return redirect(url_for("portal.review_detail", submission_id=submission_id))


@bp.post("/review/<int:submission_id>/release")
@reviewer_required
def release(submission_id: int):
    _submission(submission_id)
    if review.release(submission_id, current_user.id):
        db.session.commit()
        flash(f"Released submission {submission_id}; others can take it now.", "info")
    else:
        flash("You were not holding that submission; nothing was changed.", "error")
    return redirect(url_for("portal.queue"))


def approval_message(result) -> str:
    if result.code == "cap_reached":
        return f"Approved, but the cap was reached: {result.delta_points} points."
    badges = f" Badges: {', '.join(worth.badge_names(result.badge_codes))}." if result.badge_codes else ""
    return f"Approved: {result.delta_points:+d} points.{badges}"


@bp.post("/review/<int:submission_id>/decide")
@reviewer_required
def decide(submission_id: int):
    """Decide, then land on the next item of the queue the reviewer came from (hidden `queue`:
    its filters and sort), claimed for them; back to that queue when nothing is left. A missing
    or too long reason re-shows the page with the error at the field and the text kept."""
    s = _submission(submission_id)
    form = DecisionForm()
    qs = _queue_qs(form.queue.data)
    here = url_for("portal.review_detail", submission_id=submission_id, q=qs or None)
    action = "approve" if form.approve.data else "reject" if form.reject.data else "changes" if form.changes.data else ""
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            flash("The form could not be read; nothing was changed.", "error")
            return redirect(here)
        return _detail(s, form, qs, 400)
    try:
        result = review.decide(submission_id, current_user.id, action, form.reason.data)
    except Conflict as exc:
        db.session.rollback()
        flash("Already recorded; nothing was changed." if exc.code == "duplicate_event" else exc.message, "error")
        return redirect(here)
    except DomainError as exc:
        if exc.code == "reason_required":
            db.session.rollback()
            form.reason.errors = [REASON_WORDS[action]]
            return _detail(s, form, qs, 400)
        return refused(exc, here)
    notify.for_decisions([submission_id])  # e-mails go out after this commit, never before
    if action == "approve":
        flash(approval_message(result), "success")
    elif action == "reject":
        flash(f"Rejected submission {submission_id}. The uploader sees your reason.", "success")
    else:
        flash(f"Asked for changes on submission {submission_id}. The uploader sees your reason.", "success")
    following = flow.claim_next(_queue_filters(qs), current_user.id, result.submission)
    db.session.commit()
    if following is None:
        flash("Nothing else in this queue is waiting for you.", "info")
        return redirect(url_for("portal.queue") + (f"?{qs}" if qs else ""))
    flash(f"Next: submission {following.id}, yours until {following.claim_expires_at:%H:%M} UTC.", "info")
    return redirect(url_for("portal.review_detail", submission_id=following.id, q=qs or None))


REASON_WORDS = {"reject": "Give a reason for rejecting: the uploader sees it.",
                "changes": "Say what to change: the uploader sees it.", "approve": "", "": ""}


@bp.post("/review/<int:submission_id>/revoke")
@admin_required
def revoke(submission_id: int):
    _submission(submission_id)
    form = RevokeForm()
    here = url_for("portal.review_detail", submission_id=submission_id)
    if not form.validate_on_submit():
        flash("Give a reason for revoking; nothing was changed.", "error")
        return redirect(here)
    try:
        result = review.revoke(submission_id, current_user.id, form.reason.data)
    except DomainError as exc:
        return refused(exc, here)
    db.session.commit()
    flash(f"Revoked: {result.delta_points:+d} points written back to the ledger.", "success")
    return redirect(here)


@bp.app_template_global("points_earned")
def points_earned(submissions) -> dict:
    """For templates (the uploader's list and detail pages): {submission id: (points, why 0)}, one
    ledger query for the whole page (core.review.approvals.points_earned)."""
    return approvals.points_earned(list(submissions))
