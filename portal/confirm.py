"""A confirmation step before destructive admin and reviewer actions: retention "Run now",
revoking an approval, and rejecting several submissions at once. Without `confirmed=yes` in the
POST, the action's page is not run: a page says what will happen and re-posts the same fields
with `confirmed=yes` (no JavaScript needed). Only a request that would otherwise go through is
held (signed in with the role, the required fields present), so refusals read as before."""
from __future__ import annotations

from flask import render_template, request, url_for
from flask_login import current_user

from core.platform.db import db
from core.platform.models import Submission
from core.platform.numbers import parse_id
from core.review.reviewing import BULK_MAX
from portal.blueprint import bp

CONFIRMED = "yes"


def confirmed() -> bool:
    return request.form.get("confirmed") == CONFIRMED


def page(title: str, question: str, details: list[str], button: str, back: str):
    """The confirmation page for the current POST: its fields go back unchanged, plus confirmed=yes."""
    fields = [(k, v) for k, v in request.form.items(multi=True) if k not in ("confirmed", "csrf_token")]
    return render_template("portal/confirm.html", title=title, question=question, details=details, button=button,
                           action=request.path, fields=fields, back=back), 200, {"Cache-Control": "no-store"}


def _revoke(submission_id: int):
    if not current_user.has_role("admin") or not (request.form.get("reason") or "").strip():
        return None
    s = db.session.get(Submission, submission_id)
    if s is None or s.status != "approved":
        return None
    return page("Revoke this approval?", f"Revoke the approval of submission #{s.id} ({s.activity_code}, "
                f"{s.user.email})?", ["Its points are taken back with a new row in the ledger; badges stay.",
                                     f"Reason the uploader sees: {request.form.get('reason', '').strip()}"],
                "Yes, revoke it", url_for("portal.review_detail", submission_id=s.id))


def _bulk():
    # Distinct ids, as decide_many takes them: 51 copies of one id (or "5" and "05") is one
    # submission, and must not count past BULK_MAX to skip this step.
    ids = list(dict.fromkeys(str(n) for n in map(parse_id, request.form.getlist("submission_ids")) if n is not None))
    if (not request.form.get("reject") or not current_user.is_reviewer or not ids or len(ids) > BULK_MAX
            or not (request.form.get("reason") or "").strip()):
        return None
    back = request.form.get("back") or url_for("portal.queue")
    return page(f"Reject {len(ids)} submission(s)?",
                f"Reject {len(ids)} submission(s): {', '.join('#' + i for i in ids)}?",
                [f"Reason every uploader sees: {request.form.get('reason', '').strip()}",
                 "Rejected submissions earn no points and cannot be resubmitted."],
                f"Yes, reject {len(ids)}", back if back.startswith("/review") else url_for("portal.queue"))


@bp.before_request
def hold_for_confirmation():
    if request.method != "POST" or confirmed() or not current_user.is_authenticated:
        return None
    if request.endpoint == "portal.revoke":
        return _revoke(int(request.view_args["submission_id"]))
    if request.endpoint == "portal.bulk_decide":
        return _bulk()
    return None
