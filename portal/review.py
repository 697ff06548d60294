"""Reviewer pages: the queue with filters and bulk decisions, a submission's detail page, claims
and decisions. Every change is a POST form with CSRF, answered with a redirect (PRG); conflicts
become a flash message and change nothing."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from core.notifications import messages as notify
from core.platform import audit
from core.review import reviewing as review
from core.platform.db import db
from core.platform.errors import Conflict, DomainError, NotFound
from core.platform.models import SUBMISSION_STATES, Activity, Submission, User
from portal.blueprint import bp
from portal.access import admin_required, reviewer_required
from portal.forms import ActionForm, BulkForm, DecisionForm, QueueFilterForm, RevokeForm, choices
from portal.outcomes import refused


def _filters_from(form: QueueFilterForm) -> review.QueueFilters:
    return review.QueueFilters(
        status=form.status.data if form.status.data in SUBMISSION_STATES else "in_review",
        activity=form.activity.data or "", uploader=(form.uploader.data or "").strip(),
        date_from=form.date_from.data, date_to=form.date_to.data, claimed_by_me=bool(form.mine.data),
        reviewed_by_me=bool(form.reviewed.data), sort=form.sort.data or "oldest",
        after=request.args.get("after", ""))


def queue_form() -> QueueFilterForm:
    form = QueueFilterForm(request.args)
    form.status.choices = choices((s, review.STATUS_WORDS[s]) for s in SUBMISSION_STATES)
    codes = db.session.scalars(select(Activity.code).order_by(Activity.code)).all()
    form.activity.choices = choices([("", "Any activity")] + [(c, c) for c in codes])
    if not form.status.data:
        form.status.data = "in_review"
    return form


@bp.get("/review")
@reviewer_required
def queue():
    form = queue_form()
    form.validate()  # unknown values fall back to defaults; messages show next to the fields
    filters = _filters_from(form)
    try:
        page = review.queue(filters, current_user.id)
    except DomainError as exc:
        flash(exc.message, "error")
        filters.after = ""
        page = review.queue(filters, current_user.id)
    args = {k: v for k, v in request.args.items() if k != "after"}
    return render_template("portal/review/queue.html", form=form, page=page, filters=filters, args=args,
                           bulk=BulkForm(), status_words=review.STATUS_WORDS, count_cap=review.COUNT_CAP,
                           holder=review.holder, bulk_max=review.BULK_MAX)


@bp.post("/review/bulk")
@reviewer_required
def bulk_decide():
    form = BulkForm()
    back = request.form.get("back") or url_for("portal.queue")
    if not back.startswith("/review"):
        back = url_for("portal.queue")
    if not form.validate_on_submit():
        flash("The form could not be read; nothing was changed.", "error")
        return redirect(back)
    action = "approve" if form.approve.data else "reject"
    ids = [i for i in request.form.getlist("submission_ids") if i.isdigit()]
    try:
        outcome = review.decide_many([int(i) for i in ids], current_user.id, action, form.reason.data)
    except DomainError as exc:
        return refused(exc, back)
    notify.for_decisions(outcome.done)  # e-mails go out after this commit, never before
    db.session.commit()
    verb = "Approved" if action == "approve" else "Rejected"
    if outcome.done:
        extra = f", {outcome.points:+d} points in total" if action == "approve" else ""
        flash(f"{verb} {len(outcome.done)} submission(s){extra}.", "success")
    for submission_id, message in outcome.failed:
        flash(f"Submission {submission_id} was not changed: {message}", "error")
    return redirect(back)


def _submission(submission_id: int) -> Submission:
    submission = db.session.get(Submission, submission_id)
    if submission is None:
        raise NotFound("submission_not_found", f"There is no submission {submission_id}.")
    return submission


@bp.get("/review/<int:submission_id>")
@reviewer_required
def review_detail(submission_id: int):
    s = _submission(submission_id)
    trail = audit.trail("submission", s.id)
    actor_ids = {e.actor_id for e in trail if e.actor_id}
    actors = {u.id: u.email for u in db.session.scalars(select(User).where(User.id.in_(actor_ids)))} if actor_ids else {}
    return render_template(
        "portal/review/detail.html", s=s, holder=review.holder(s), earlier=review.earlier_submissions(s),
        hints=review.hints(s), trail=trail, actors=actors, decision=DecisionForm(), action=ActionForm(),
        revoke=RevokeForm(), status_words=review.STATUS_WORDS, scan_words=review.SCAN_WORDS)


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
    badges = f" Badges: {', '.join(result.badge_codes)}." if result.badge_codes else ""
    return f"Approved: {result.delta_points:+d} points.{badges}"


@bp.post("/review/<int:submission_id>/decide")
@reviewer_required
def decide(submission_id: int):
    _submission(submission_id)
    form = DecisionForm()
    here = url_for("portal.review_detail", submission_id=submission_id)
    if not form.validate_on_submit():
        flash("The reason is too long; nothing was changed.", "error")
        return redirect(here)
    action = "approve" if form.approve.data else "reject" if form.reject.data else "changes" if form.changes.data else ""
    try:
        result = review.decide(submission_id, current_user.id, action, form.reason.data)
    except Conflict as exc:
        db.session.rollback()
        flash("Already recorded; nothing was changed." if exc.code == "duplicate_event" else exc.message, "error")
        return redirect(here)
    except DomainError as exc:
        return refused(exc, here)
    notify.for_decisions([submission_id])  # e-mails go out after this commit, never before
    db.session.commit()
    if action == "approve":
        flash(approval_message(result), "success")
    elif action == "reject":
        flash(f"Rejected submission {submission_id}. The uploader sees your reason.", "success")
    else:
        flash(f"Asked for changes on submission {submission_id}. The uploader sees your reason.", "success")
    return redirect(url_for("portal.queue"))


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
