"""Admin page: every evidence file the virus scanner could not fully read (`unscannable`), with
its reason, so an operator can see what was refused and why (a limit to raise, a password to ask
about), and scan one again once a limit is raised. Such files are kept but never served."""
from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from core.evidence.scan_pipeline import scan_again, unscannable_files
from core.evidence.scanning import unscannable_advice
from core.platform.db import db
from portal.access import admin_required
from portal.blueprint import bp
from portal.forms import ActionForm


# The reviewer's and uploader's pages say the same plain words next to such a file.
bp.add_app_template_global(unscannable_advice, "unscannable_advice")


@bp.get("/admin/unscannable")
@admin_required
def admin_unscannable():
    return render_template("portal/admin/unscannable.html", files=unscannable_files(), advice=unscannable_advice,
                           action=ActionForm())


@bp.post("/admin/unscannable/<int:file_id>/scan-again")
@admin_required
def admin_scan_again(file_id: int):
    if not ActionForm().validate_on_submit():
        flash("The form expired. Nothing was changed.", "error")
    elif scan_again(file_id, current_user.id):
        db.session.commit()  # the scan is queued by this commit
        flash(f"File {file_id} is being scanned again.", "success")
    else:
        db.session.rollback()
        flash(f"File {file_id} is not unscannable (any more). Nothing was changed.", "error")
    return redirect(url_for("portal.admin_unscannable"))
