"""What the queue page shows for a filter combination, row by row: the rows and their order, each
row's link, checkbox, uploader, files, marks and claim holder, and the bulk form with its CSRF
token. The page reads plain rows and renders them without per-row helpers (docs/performance.md,
"Review queue, the page's Python"); this pins the HTML a reviewer gets. Also the uploader filter
on SQLite, where the id list is a plain IN."""
from __future__ import annotations

import html as html_lib
import re
from datetime import datetime, timedelta, timezone

import pytest
from flask import url_for
from sqlalchemy import select

from core.platform.db import db, utcnow
from core.platform.models import Submission, User
from core.review import queue_query
from tests.conftest import app_on_migrations
from tests.test_portal_support import PASSWORD, add_file, csrf_token, insert, people, sign_in


@pytest.fixture
def csrf_app(make_app):
    return make_app(flask_overrides={"WTF_CSRF_ENABLED": True})


def _sign_in(client, who: str) -> None:
    token = csrf_token(client, "/login")
    response = client.post("/login", data={"email": f"{who}@example.com", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302


def _rows(html: str) -> list[str]:
    """Each <tr data-row> of the page, whitespace between tags removed."""
    return [re.sub(r">\s+<", "><", m.strip()) for m in re.findall(r"<tr data-row>(.*?)</tr>", html, re.S)]


def test_rows_order_and_actions_for_a_filter_combination(csrf_app):
    app = csrf_app
    ids = people(app)
    a = insert(app, ids["owner"], 3)  # 2024-01-01 00:00, 00:01, 00:02
    [b] = insert(app, ids["other"], activity="PRESENT", start=datetime(2024, 1, 1, 1, tzinfo=timezone.utc))
    [own] = insert(app, ids["reviewer"], start=datetime(2024, 1, 1, 2, tzinfo=timezone.utc))
    insert(app, ids["owner"], status="approved", decided_by_id=ids["reviewer"])  # another tab
    now = utcnow()
    with app.app_context():
        for sid, holder, until in ((a[0], ids["reviewer"], now + timedelta(minutes=20)),
                                   (a[1], ids["reviewer2"], now + timedelta(minutes=25)),
                                   (a[2], ids["reviewer2"], now - timedelta(minutes=1))):  # run out: nobody's
            row = db.session.get(Submission, sid)
            row.claimed_by_id, row.claim_expires_at = holder, until
        db.session.get(User, ids["other"]).name = "Grace <Hopper>"  # escaped, not markup
        db.session.commit()
        until = {sid: db.session.get(Submission, sid).claim_expires_at.strftime("%H:%M") for sid in a[:2]}
    add_file(app, a[0], sha256="ab" * 32)
    add_file(app, b, sha256="ab" * 32)  # the same bytes: both rows are marked
    add_file(app, a[1], sha256="cd" * 32)

    client = app.test_client()
    _sign_in(client, "reviewer")
    qs = "sort=newest&uploader=example.com"
    html = client.get("/review?" + qs).get_data(as_text=True)
    with app.test_request_context():
        href = {sid: html_lib.escape(url_for("portal.review_detail", submission_id=sid, q=qs)) for sid in a + [b, own]}

    def row(sid, who, email, activity, files, sent, claimed, *, pick=True, reused=False, yours=False, day="2024-01-01"):
        box = (f'<input type="checkbox" name="submission_ids" value="{sid}" id="pick-{sid}" '
               f'aria-label="Select submission {sid}">') if pick else ""
        mark = f'<br><strong class="reused-mark" data-testid="reused-{sid}">Reused evidence?</strong>' if reused else ""
        mine = f'<br><strong data-testid="own-{sid}">Yours: another reviewer decides it</strong>' if yours else ""
        return (f'<td>{box}</td><td><a href="{href[sid]}" data-open>#{sid}</a>{mark}</td>'
                f'<td>{who}<br><span class="muted">{email}</span>{mine}</td><td>{activity}</td>'
                f'<td data-testid="files-{sid}">{files}</td><td>{day}</td><td>{sent}</td>'
                f'<td><span class="status status-in_review">In review</span></td><td>{claimed}</td>')

    nobody = '<span class="muted">nobody</span>'
    one_png = '1 file<br><span class="muted">PNG</span>'
    assert _rows(html) == [
        row(own, "reviewer", "reviewer@example.com", "EXPLORE", "0 files", "2024-01-01 02:00", nobody,
            pick=False, yours=True),
        row(b, "Grace &lt;Hopper&gt;", "other@example.com", "PRESENT", one_png, "2024-01-01 01:00", nobody,
            reused=True),
        row(a[2], "owner", "owner@example.com", "EXPLORE", "0 files", "2024-01-01 00:02", nobody, day="2024-01-03"),
        row(a[1], "owner", "owner@example.com", "EXPLORE", one_png, "2024-01-01 00:01",
            f"Rita Second until {until[a[1]]} UTC", day="2024-01-02"),
        row(a[0], "owner", "owner@example.com", "EXPLORE", one_png, "2024-01-01 00:00", f"You until {until[a[0]]} UTC",
            reused=True),
    ]
    bulk = re.search(r'<form method="post" action="/review/bulk" class="bulk">(.*?)</form>', html, re.S).group(1)
    assert re.search(r'<input id="csrf_token" name="csrf_token" type="hidden" value="[^"]+">', bulk)
    assert f'<input type="hidden" name="back" value="{html_lib.escape("/review?" + qs)}">' in bulk
    assert 'name="approve" type="submit" value="Approve selected"' in bulk
    assert 'name="reject" type="submit" value="Reject selected"' in bulk
    assert 'In review <span class="count">(5)</span>' in html and 'Approved <span class="count">(1)</span>' in html

    # A decided tab: no checkboxes, no claim column, no bulk buttons; oldest first.
    html = client.get("/review?status=approved&reviewed=y").get_data(as_text=True)
    [only] = _rows(html)
    assert '<span class="status status-approved">Approved</span></td>' in only and "checkbox" not in only
    assert "Decide the selected" not in html and ">Claimed by<" not in html


def test_uploader_filter_on_sqlite(tmp_path):
    with app_on_migrations("sqlite", tmp_path, "queue") as app:
        from core.accounts.users import create_user
        from core.points.catalogue import seed_catalogue

        seed_catalogue()
        owner, _ = create_user("owner@example.com", "uploader", PASSWORD, name="Ada Owner")
        other, _ = create_user("other@example.com", "uploader", PASSWORD)
        reviewer, _ = create_user("reviewer@example.com", "reviewer", PASSWORD)
        db.session.commit()
        mine = insert(app, owner.id, 2)
        theirs = insert(app, other.id, 1)
        for text, expected in (("ada", mine), ("example.com", mine + theirs), ("nobody", [])):
            for limit in (0, 1, 500):  # subquery; NOT IN the few others; IN the few
                cond, _ = queue_query._uploader_condition(text, limit=limit)
                assert list(db.session.scalars(select(Submission.id).where(cond).order_by(Submission.id))) == expected
        page = queue_query.queue(queue_query.QueueFilters(uploader="ADA"), reviewer.id)
        assert [(r.id, r.user.name, r.holder) for r in page.items] == [(mine[0], "Ada Owner", None),
                                                                      (mine[1], "Ada Owner", None)]


@pytest.mark.parametrize("query", [
    "",
    "status=approved&activity=AMPLIFY&uploader=%22%3E%3Cb%20x%3D%27y%27%3E%26amp&date_from=2024-01-02"
    "&date_to=2024-01-31&mine=y&reviewed=y&sort=-session_date",
    "status=bogus&activity=NOPE&sort=zzz&date_from=2024-13-01&date_to=x&uploader=" + "u" * 201,
])
def test_the_written_out_filter_controls_are_the_widgets_html(app, query):
    from portal.review import queue_form

    people(app)  # the catalogue, for the activity choices
    with app.test_request_context("/review?" + query):
        form = queue_form()
        form.validate()
        macros = app.jinja_env.get_template("portal/_field.html").module
        for f in form:
            if f.type == "BooleanField":
                assert str(macros.control(f)) == str(f()), f.name
            elif f.type != "SubmitField":
                assert str(macros.field(f, fast=True)) == str(macros.field(f)), f.name


def test_the_status_and_pager_links_keep_every_filter_as_data(app):
    """Keys url_for reads as its own options (`_method`, `_anchor`) are query data like any other:
    `/review?_method=POST` was a 500 (a BuildError while building the status links)."""
    ids = people(app)
    insert(app, ids["owner"], 3)
    client = app.test_client()
    sign_in(client, "reviewer")
    response = client.get("/review?_method=POST&_anchor=x&uploader=%C3%85+b%40c")
    assert response.status_code == 200
    links = re.findall(r'<li><a href="(/review\?[^"]*)"', response.get_data(as_text=True))
    assert links[0] == "/review?_method=POST&amp;_anchor=x&amp;uploader=%C3%85+b@c&amp;status=scanning"
    html = client.get("/review?uploader=owner&after=" + "x").get_data(as_text=True)  # a broken cursor: page 1
    assert '<a href="/review?uploader=owner&amp;status=in_review" aria-current="page">' in html
