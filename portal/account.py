"""The signed-in person's own settings: whether they get e-mail notifications (uploaders: about
their submissions; admins also: the daily digest)."""
from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from core.platform import audit
from core.platform.db import db
from portal.access import signed_in_required
from portal.blueprint import bp
from portal.forms import NotificationsForm


@bp.route("/account", methods=["GET", "POST"])
@signed_in_required
def account():
    form = NotificationsForm()
    if form.validate_on_submit():
        wanted = bool(form.notify_email.data)
        if wanted != bool(current_user.notify_email):
            audit.record("user.notifications_changed", "user", current_user.id, actor_id=current_user.id,
                         old=bool(current_user.notify_email), new=wanted)
            current_user.notify_email = wanted
            db.session.commit()
        flash("E-mail notifications are on." if wanted else "E-mail notifications are off.", "success")
        return redirect(url_for("portal.account"))
    form.notify_email.data = bool(current_user.notify_email)
    return render_template("portal/account.html", form=form)
