"""Admin -> Operations: KPI tiles, charts and the files that need an admin's attention.

The charts are separate SVG responses (portal/charts.py) shown with <img>, so the page keeps
its CSP (no inline script or style) and each chart can be opened on its own.
"""
from __future__ import annotations

from flask import Response, abort, render_template

from core.monitoring import dashboard
from portal import charts
from portal.access import admin_required
from portal.blueprint import bp

CHARTS = {
    "points": lambda: charts.points_per_day(*dashboard.points_per_day()),
    "latency": lambda: charts.latency(dashboard.latency_histogram()),
    "backlogs": lambda: charts.backlogs(dashboard.backlog_series()),
}


@bp.get("/admin/operations")
@admin_required
def admin_operations():
    return render_template("portal/admin/operations.html", kpis=dashboard.kpis(), files=dashboard.attention_files(),
                           latency=dashboard.latency_histogram(), charts=CHARTS)


@bp.get("/admin/operations/charts/<name>.svg")
@admin_required
def admin_operations_chart(name: str):
    draw = CHARTS.get(name)
    if draw is None:
        abort(404)
    response = Response(draw(), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "private, no-store"
    # Opened on its own, the SVG may style itself but run nothing and load nothing.
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response
