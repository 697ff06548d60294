"""Admin page: every evidence file the virus scanner could not fully read (`unscannable`), with
its reason, so an operator can see what was refused and why (a limit to raise, a password to ask
about). Such files are kept but never served."""
from __future__ import annotations

from flask import render_template

from core.evidence.scan_pipeline import unscannable_files
from core.evidence.scanning import unscannable_advice
from portal.access import admin_required
from portal.blueprint import bp


# The reviewer's and uploader's pages say the same plain words next to such a file.
bp.add_app_template_global(unscannable_advice, "unscannable_advice")


@bp.get("/admin/unscannable")
@admin_required
def admin_unscannable():
    return render_template("portal/admin/unscannable.html", files=unscannable_files(), advice=unscannable_advice)
