"""The operations dashboard's charts as SVG documents, drawn on the server by pygal.

Served as images (portal/operations.py), never inlined into the page: the page's CSP allows no
inline style, and an SVG loaded through <img> runs no script. pygal's tooltip script (a CDN
link by default) is switched off, so the SVG references nothing outside itself.
"""
from __future__ import annotations

from datetime import date

import pygal
from pygal.style import Style

STYLE = Style(
    background="#ffffff", plot_background="#ffffff", foreground="#1f2933", foreground_strong="#1f2933",
    foreground_subtle="#9aa5b1", font_family="system-ui, sans-serif", label_font_size=12, major_label_font_size=12,
    legend_font_size=12, title_font_size=14, value_font_size=11,
    colors=("#2563eb", "#d97706", "#059669", "#7c3aed", "#dc2626", "#0891b2", "#4b5563"),
)


def _config(**options) -> dict:
    base = dict(style=STYLE, js=[], width=900, height=340, legend_at_bottom=True, legend_at_bottom_columns=4,
                show_dots=False, print_values=False, truncate_legend=-1, truncate_label=-1, margin=16, explicit_size=False)
    base.update(options)
    return base


def _render(chart) -> bytes:
    """The SVG without pygal's inline config <script> (it only feeds the tooltip script we do not
    load), so the document carries no script at all."""
    from xml.etree import ElementTree

    tree = chart.render_tree()
    for parent in list(tree.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    body = ElementTree.tostring(tree, encoding="unicode")
    return ("<?xml version='1.0' encoding='utf-8'?>\n" + body).encode()


def points_per_day(axis: list[date], series: dict[str, list[int]]) -> bytes:
    """Stacked bars: points per UTC day, one colour per activity."""
    chart = pygal.StackedBar(**_config(title="Points per day by activity (30 days)", x_label_rotation=0,
                                       show_minor_x_labels=False, x_labels_major_every=5))
    chart.x_labels = [d.strftime("%d %b") for d in axis]
    if not series:
        chart.add("no points yet", [0] * len(axis))
    for code, values in series.items():
        chart.add(code, values)
    return _render(chart)


def latency(hist: dict) -> bytes:
    """Histogram of tag -> ledger latency; bars up to the target and past it in two colours."""
    target = hist["target_s"]
    labels, within, late = [], [], []
    for start, end, count in hist["buckets"]:
        labels.append(f"{start}-{end} s" if end is not None else f">{start} s")
        ok = end is not None and end <= target
        within.append(count if ok else None)
        late.append(None if ok else count)
    share = f"{hist['within'] / hist['events']:.2%}" if hist["events"] else "no events"
    chart = pygal.StackedBar(**_config(title=f"Tag -> ledger latency, 7 days: {share} within {target} s (objective 99.9%)"))
    chart.x_labels = labels
    chart.add(f"within {target} s", within)
    chart.add(f"over {target} s", late)
    return _render(chart)


def backlogs(samples: list[dict]) -> bytes:
    """Queue depths and pending scans (left axis), outbox lag in seconds (right axis), 24 h."""
    chart = pygal.DateTimeLine(**_config(title="Backlogs, last 24 h (sampled every minute)", x_label_rotation=0,
                                         x_value_formatter=lambda dt: dt.strftime("%H:%M"), show_x_guides=False))
    queues = sorted({name for s in samples for name in s["queue_depths"]})
    for name in queues:
        chart.add(f"queue {name}", [(s["taken_at"], s["queue_depths"].get(name, 0)) for s in samples])
    if not samples:  # pygal cannot scale an empty secondary axis
        chart.no_data_text = "No samples yet (the ops-sample job writes one a minute)"
        return _render(chart)
    chart.add("pending scans", [(s["taken_at"], s["scans_pending"]) for s in samples])
    chart.add("outbox lag (s, right)", [(s["taken_at"], s["outbox_lag_s"] or 0) for s in samples], secondary=True)
    return _render(chart)
