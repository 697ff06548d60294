"""Site furniture every browser asks for: /favicon.ico (it used to be a 404 on every page)."""
from __future__ import annotations

from flask import current_app, send_from_directory

from portal.blueprint import bp


@bp.get("/favicon.ico")
def favicon():
    return send_from_directory(current_app.static_folder, "favicon.ico", mimetype="image/vnd.microsoft.icon",
                               max_age=86400)
