"""Admin pages: users and roles, the catalogue and tag mappings, unmatched Kajabi events, outbox
dead letters, retention, backfill runs, reviewer progress, and the job queues."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from rq.registry import FailedJobRegistry
from sqlalchemy import func, or_, select

from core.accounts import users as accounts
from core.admin import actions as admin
from core.monitoring import dashboard
from core.retention import enforcement as retention
from core.review import reviewing as review
from core.platform.db import db, utcnow
from core.platform.errors import DomainError
from core.platform.models import Activity, ActivityTag, KajabiEvent, OutboxRecord, Run, User
from core.platform.numbers import parse_id
from core.platform.queues import enqueue_after_commit
from core.platform.services import services
from portal import confirm, run_words
from portal.blueprint import bp
from portal.access import admin_required
from portal.outcomes import refused
from portal.forms import (ActionForm, ActivityForm, AttachEventForm, NewUserForm, RetentionForm, RoleForm, TagForm,
                          choices)
from portal.uploader import attach_errors


def _done(message: str, endpoint: str, **values):
    db.session.commit()
    flash(message, "success")
    return redirect(url_for(endpoint, **values))


def _failed(exc: DomainError, endpoint: str, **values):
    return refused(exc, url_for(endpoint, **values))


@bp.get("/admin")
@admin_required
def admin_home():
    return render_template("portal/admin/index.html", progress=review.progress(), attention=dashboard.attention_counts())


# ---- users --------------------------------------------------------------------------------

USERS_PAGE_SIZE = 50


def _users_page(form: NewUserForm, status: int = 200, created: tuple[User, str] | None = None):
    """One page of users (by e-mail), optionally those whose e-mail, name or city contains `q`."""
    q = (request.args.get("q") or "").replace("\x00", "").strip()[:200]  # PostgreSQL text refuses NUL
    page = parse_id(request.args.get("page", "1")) or 1
    if page >= 100_000:
        page = 1
    query = select(User)
    if q:
        query = query.where(or_(accounts.matching(q),
                                func.lower(func.coalesce(User.city, "")).contains(q.lower(), autoescape=True)))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    pages = max(1, -(-total // USERS_PAGE_SIZE))
    page = min(page, pages)  # past the end (an old link, a typed number): the last page, not an empty list
    users = db.session.scalars(query.order_by(User.email).offset((page - 1) * USERS_PAGE_SIZE)
                               .limit(USERS_PAGE_SIZE)).all()
    return render_template("portal/admin/users.html", users=users, form=form, role_form=RoleForm,
                           created=created, q=q, page=page, pages=pages, total=total), status


@bp.get("/admin/users")
@admin_required
def admin_users():
    return _users_page(NewUserForm())


@bp.post("/admin/users")
@admin_required
def admin_create_user():
    form = NewUserForm()
    if not form.validate_on_submit():
        return _users_page(form, 400)
    try:
        user, password = admin.add_user(current_user.id, form.email.data, form.role.data, name=form.name.data or "",
                                        city=form.city.data or None, password=form.password.data or None)
    except DomainError as exc:
        db.session.rollback()
        attach_errors(form, exc, {})
        if not any(f.errors for f in form):
            form.email.errors = [exc.message]
        return _users_page(form, 400)
    if form.password.data:
        return _done(f"Created {user.email} as {user.role}.", "portal.admin_users")
    # A generated password goes into this page only: a flash would carry it in the session
    # cookie, which is signed, not encrypted. The page is not cached.
    db.session.commit()
    body, status = _users_page(NewUserForm(formdata=None), 201, created=(user, password))
    return body, status, {"Cache-Control": "no-store"}


@bp.post("/admin/users/<int:user_id>/role")
@admin_required
def admin_set_role(user_id: int):
    form = RoleForm()
    if not form.validate_on_submit():
        flash("Choose a valid role; nothing was changed.", "error")
        return redirect(url_for("portal.admin_users"))
    try:
        user = admin.set_role(current_user.id, user_id, form.role.data, bool(form.active.data))
    except DomainError as exc:
        return _failed(exc, "portal.admin_users")
    return _done(f"{user.email} is now {user.role}{'' if user.active else ' (inactive)'}.", "portal.admin_users")


# ---- catalogue ----------------------------------------------------------------------------

@bp.get("/admin/catalogue")
@admin_required
def admin_catalogue(failed: tuple[str, ActivityForm] | None = None, status: int = 200):
    """`failed`: (code, the refused form), whose typed values and errors show on that activity."""
    activities = db.session.scalars(select(Activity).order_by(Activity.code)).all()
    tags = db.session.scalars(select(ActivityTag).order_by(ActivityTag.tag)).all()
    tag_form = TagForm()
    tag_form.activity_code.choices = choices((a.code, a.code) for a in activities)
    return render_template("portal/admin/catalogue.html", activities=activities, tags=tags, tag_form=tag_form,
                           activity_form=ActivityForm, action=ActionForm(), failed=failed), status


@bp.post("/admin/activities/<code>")
@admin_required
def admin_update_activity(code: str):
    form = ActivityForm()
    if not form.validate_on_submit():
        flash(f"{code} was not saved; see the message next to the field.", "error")
        return admin_catalogue(failed=(code, form), status=400)
    try:
        admin.update_activity(current_user.id, code, name=form.name.data, points=form.points.data,
                              cap_points=form.cap_points.data, cap_period=form.cap_period.data,
                              active=bool(form.active.data))
    except DomainError as exc:
        if not any(isinstance(d, dict) and d.get("field") in form for d in exc.details):
            return _failed(exc, "portal.admin_catalogue")
        db.session.rollback()  # the message goes next to its field, with what was typed kept
        attach_errors(form, exc, {})
        flash(f"{code} was not saved; see the message next to the field.", "error")
        return admin_catalogue(failed=(code, form), status=400)
    return _done(f"Saved {code}.", "portal.admin_catalogue")


@bp.post("/admin/tags")
@admin_required
def admin_add_tag():
    form = TagForm()
    form.activity_code.choices = choices((c, c) for c in db.session.scalars(select(Activity.code)))
    if not form.validate_on_submit():
        reasons = form.tag.errors or form.activity_code.errors or ["Give a tag and an activity."]
        flash(f"{reasons[0]} Nothing was changed.", "error")
        return redirect(url_for("portal.admin_catalogue"))
    try:
        mapping = admin.add_tag(current_user.id, form.tag.data, form.activity_code.data)
    except DomainError as exc:
        return _failed(exc, "portal.admin_catalogue")
    return _done(f"Mapped tag {mapping.tag} to {mapping.activity_code}.", "portal.admin_catalogue")


@bp.post("/admin/tags/remove")
@admin_required
def admin_remove_tag():
    ActionForm().validate_on_submit()
    try:
        admin.remove_tag(current_user.id, request.form.get("tag", ""))
    except DomainError as exc:
        return _failed(exc, "portal.admin_catalogue")
    return _done("Removed the tag mapping.", "portal.admin_catalogue")


# ---- Kajabi -------------------------------------------------------------------------------

@bp.get("/admin/kajabi")
@admin_required
def admin_kajabi():
    events = db.session.scalars(select(KajabiEvent).where(KajabiEvent.state == "queued_unmatched")
                                .order_by(KajabiEvent.received_at).limit(200)).all()
    return render_template("portal/admin/kajabi.html", events=events, form=AttachEventForm(), action=ActionForm())


@bp.post("/admin/kajabi/<int:event_id>/attach")
@admin_required
def admin_attach_event(event_id: int):
    form = AttachEventForm()
    if not form.validate_on_submit():
        flash("Give the e-mail of an existing user; nothing was changed.", "error")
        return redirect(url_for("portal.admin_kajabi"))
    try:
        state = admin.attach_event(current_user.id, event_id, form.email.data)
    except DomainError as exc:
        return _failed(exc, "portal.admin_kajabi")
    return _done(f"Attached and reprocessed: the event is now {state}.", "portal.admin_kajabi")


@bp.post("/admin/kajabi/reconcile")
@admin_required
def admin_reconcile():
    from core.points import kajabi

    counts = kajabi.reconcile()
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing to do"
    flash(f"Reconciled unmatched events ({summary}).", "success")
    return redirect(url_for("portal.admin_kajabi"))


# ---- outbox -------------------------------------------------------------------------------

@bp.get("/admin/outbox")
@admin_required
def admin_outbox():
    dead = db.session.scalars(select(OutboxRecord).where(OutboxRecord.status == "dead")
                              .order_by(OutboxRecord.created_at).limit(200)).all()
    from core.delivery import outbox

    return render_template("portal/admin/outbox.html", dead=dead, counts=outbox.counts(), action=ActionForm())


@bp.post("/admin/outbox/retry")
@admin_required
def admin_retry_outbox():
    raw = request.form.get("record_id", "")
    record_id = parse_id(raw)
    if raw and record_id is None:  # a mangled id must not turn into "retry every dead record"
        flash("No such outbox record; nothing was retried.", "error")
        return redirect(url_for("portal.admin_outbox"))
    count = admin.retry_dead(current_user.id, record_id)
    return _done(f"{count} dead record(s) queued for delivery again.", "portal.admin_outbox")


# ---- retention and backfills --------------------------------------------------------------

@bp.get("/admin/retention")
@admin_required
def admin_retention():
    form = RetentionForm(data={"days": services().settings.evidence_retention_days})
    runs = db.session.scalars(select(Run).where(Run.kind == "retention").order_by(Run.created_at.desc()).limit(20)).all()
    return render_template("portal/admin/retention.html", form=form, runs=runs)


@bp.post("/admin/retention")
@admin_required
def admin_run_retention():
    form = RetentionForm()
    if not form.validate_on_submit():
        flash("Give a number of days from 1 to 36500; nothing was changed.", "error")
        return redirect(url_for("portal.admin_retention"))
    if not form.dry_run.data and not confirm.confirmed():
        cutoff = datetime.now(timezone.utc) - timedelta(days=form.days.data)
        return confirm.page("Run retention now?", f"Delete every evidence file older than {form.days.data} days "
                            f"(sent before {cutoff:%Y-%m-%d %H:%M} UTC), with its thumbnails?",
                            ["This cannot be undone: the files are deleted from storage.",
                             "Raw Kajabi payloads past their own limit are anonymised too.",
                             "Not sure? Go back and run a dry run first: it counts what would go and deletes nothing."],
                            "Yes, delete them now", url_for("portal.admin_retention"))
    if not form.dry_run.data:
        # A real run walks every user's objects: a job, not this request (gunicorn's timeout
        # would cut a long one short). It records its Run, listed below with its counts.
        enqueue_after_commit("maintenance", "jobs.retention.run_all", form.days.data, current_user.email,
                             timeout=retention.RUN_ALL_TIMEOUT_S)
        db.session.commit()
        flash("Retention run queued. It is listed below once it starts, with its counts when it finishes.",
              "success")
        return redirect(url_for("portal.admin_retention"))
    # A dry run deletes nothing and reports here; it stays in the request.
    result = retention.run_all(days=form.days.data, dry_run=True, started_by=current_user.email)
    # Listed with the real runs, marked as a dry run (retention's own run_all records none for it).
    db.session.add(Run(kind="retention", status="dry_run", started_by=current_user.email, finished_at=utcnow(),
                       params={"days": form.days.data, "cutoff": result.get("cutoff")},
                       counts={k: v for k, v in result.items() if k not in ("dry_run", "cutoff", "kajabi_anonymised")}))
    db.session.commit()
    summary = ", ".join(run_words.count_words(result, dry=True))
    flash(f"Dry run (nothing deleted) finished: {summary}.", "success")
    return redirect(url_for("portal.admin_retention"))


@bp.get("/admin/backfills")
@admin_required
def admin_backfills():
    runs = db.session.scalars(select(Run).where(Run.kind == "backfill").order_by(Run.created_at.desc()).limit(50)).all()
    return render_template("portal/admin/backfills.html", runs=runs)


# ---- progress and jobs --------------------------------------------------------------------

@bp.get("/admin/progress")
@admin_required
def admin_progress():
    return render_template("portal/admin/progress.html", progress=review.progress())


@bp.get("/admin/jobs")
@admin_required
def admin_jobs():
    # rq-dashboard is not installed and serves inline script, which our CSP refuses; this page
    # lists what an operator needs: queue sizes and the failed jobs with their errors.
    queues = []
    for queue in services().queues.all():
        registry = FailedJobRegistry(queue=queue)
        failed_ids = registry.get_job_ids(0, 19)
        failed = [job for job in queue.job_class.fetch_many(failed_ids, connection=queue.connection) if job]
        queues.append({"name": queue.name, "size": queue.count, "failed_count": registry.count, "failed": failed})
    return render_template("portal/admin/jobs.html", queues=queues)
