"""The queue: each filter, each sort with keyset pagination, counts per status."""
from __future__ import annotations

import re
from datetime import date

from core.review import queue_query as review
from core.review.reviewing import claim
from core.platform.db import db
from tests.test_portal_support import insert, people, sign_in


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'name="submission_ids" value="(\d+)"', html)]


def _queue(app, reviewer_id, **kw):
    with app.app_context():
        page = review.queue(review.QueueFilters(**kw), reviewer_id, page_size=kw.pop("page_size", 50))
        return [s.id for s in page.items], page.next_cursor, page.counts


def test_keyset_pages_cover_everything_once_in_each_sort(app):
    ids = people(app)
    sids = insert(app, ids["owner"], 23)
    for sort in review.SORTS:
        seen, after = [], ""
        while True:
            with app.app_context():
                page = review.queue(review.QueueFilters(sort=sort, after=after), ids["reviewer"], page_size=5)
                seen += [(s.session_date, s.created_at, s.id) for s in page.items]
            if not page.next_cursor:
                break
            after = page.next_cursor
        assert sorted(i for _, _, i in seen) == sids, sort
        column = 0 if "session_date" in sort else 1
        keys = [(row[column], row[2]) for row in seen]
        assert keys == sorted(keys, reverse=sort.startswith("-") or sort == "newest"), sort


def test_filters_and_counts(app):
    ids = people(app)
    mine = insert(app, ids["owner"], 3, activity="PRESENT", session_date=date(2024, 5, 1))
    theirs = insert(app, ids["other"], 2, activity="EXPLORE", session_date=date(2024, 6, 1))
    decided = insert(app, ids["other"], 2, status="approved", decided_by_id=ids["reviewer"])
    insert(app, ids["other"], 1, status="rejected", decided_by_id=ids["reviewer2"])
    with app.app_context():
        claim(theirs[0], ids["reviewer"])
        db.session.commit()
        with_name = db.session.get(__import__("core.platform.models", fromlist=["User"]).User, ids["other"])
        with_name.name = "Grace Hopper"
        db.session.commit()

    assert _queue(app, ids["reviewer"], activity="PRESENT")[0] == mine
    assert _queue(app, ids["reviewer"], uploader="HOPPER")[0] == theirs  # by name, any case
    assert _queue(app, ids["reviewer"], uploader="owner@exa")[0] == mine  # by e-mail
    assert _queue(app, ids["reviewer"], date_from=date(2024, 5, 15))[0] == theirs
    assert _queue(app, ids["reviewer"], date_to=date(2024, 5, 15))[0] == mine
    assert _queue(app, ids["reviewer"], claimed_by_me=True)[0] == [theirs[0]]
    assert _queue(app, ids["reviewer2"], claimed_by_me=True)[0] == []
    assert _queue(app, ids["reviewer"], status="approved", reviewed_by_me=True)[0] == decided
    _, _, counts = _queue(app, ids["reviewer"])
    assert counts == {"scanning": 0, "in_review": 5, "changes_requested": 0, "approved": 2, "rejected": 1, "revoked": 0}
    _, _, counts = _queue(app, ids["reviewer"], uploader="grace")
    assert counts["in_review"] == 2 and counts["approved"] == 2


def test_queue_page_filters_through_the_form_and_pages(app):
    ids = people(app)
    sids = insert(app, ids["owner"], 60)
    client = app.test_client()
    sign_in(client, "reviewer")
    html = client.get("/review").get_data(as_text=True)
    assert _ids(html) == sids[:50] and "In review <span class=\"count\">(60)" in html
    nxt = re.search(r'href="([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    assert _ids(client.get(nxt).get_data(as_text=True)) == sids[50:]
    html = client.get("/review?sort=newest&uploader=owner&activity=EXPLORE&date_from=2024-01-02&date_to=2024-01-03"
                      ).get_data(as_text=True)
    assert _ids(html) == sorted((i for i in sids if (i - 1) % 20 in (1, 2)), reverse=True)
    assert 'value="owner"' in html  # the filters are kept
    broken = client.get("/review?after=not-a-cursor")
    assert broken.status_code == 200 and "That page link is broken" in broken.get_data(as_text=True)


def test_uploader_filter_gives_the_same_rows_whichever_way_it_is_sent(app):
    ids = people(app)
    mine = insert(app, ids["owner"], 2)
    everyone = sorted(mine + insert(app, ids["other"], 2))
    from sqlalchemy import select

    from core.platform.models import Submission

    with app.app_context():
        # "r@example" is in owner@, other@ and reviewer@ (who has no submissions), not admin@.
        for text, expected in (("owner", mine), ("example.com", everyone), ("r@example", everyone),
                               ("nobody-at-all", [])):
            results = set()
            for limit in (0, 1, 2, 500):  # every match as one array; IN the few; NOT IN the few others ("r@": 3 in, 2 out)
                cond, _ = review._uploader_condition(text, limit=limit)
                results.add(tuple(db.session.scalars(select(Submission.id).where(cond).order_by(Submission.id))))
            assert results == {tuple(expected)}, text


def test_counts_are_the_same_whichever_index_drives_them(app):
    ids = people(app)
    insert(app, ids["owner"], 4, activity="PRESENT", session_date=date(2024, 5, 1))
    insert(app, ids["other"], 3, status="approved", decided_by_id=ids["reviewer"], activity="EXPLORE")
    insert(app, ids["owner"], 2, status="rejected", decided_by_id=ids["reviewer"])
    with app.app_context():
        for kw in ({}, {"reviewed_by_me": True}, {"uploader": "owner"}, {"uploader": "owner", "activity": "PRESENT"},
                   {"reviewed_by_me": True, "activity": "EXPLORE", "date_from": date(2024, 1, 1)}):
            conds, anchored = review.conditions(review.QueueFilters(**kw), ids["reviewer"])
            assert anchored == bool(kw), kw
            assert review.status_counts(conds, True) == review.status_counts(conds, False), kw
            if kw.get("date_from"):  # the session-date ordering counts the same rows
                assert review.status_counts(conds, False, dated=True) == review.status_counts(conds, False), kw
        conds, _ = review.conditions(review.QueueFilters(reviewed_by_me=True), ids["reviewer"])
        assert review.status_counts(conds, True) == {"scanning": 0, "in_review": 0, "changes_requested": 0,
                                                     "approved": 3, "rejected": 2, "revoked": 0}



def test_a_filter_matching_many_but_not_most_people_reads_users_once(app):
    """More than UPLOADER_IDS_MAX people match and more than that do not: the matches go to the
    page's statements as one array, not as a subquery that each statement ran again (at 1M
    submissions it joined every match before the LIMIT: p95 699 ms for a thousand people). The
    rows and counts are the ones a plain join gives."""
    from sqlalchemy import event, select, text

    from core.platform.models import Submission, User

    ids = people(app)
    over = review.UPLOADER_IDS_MAX + 10
    with app.app_context():
        db.session.execute(text(
            "INSERT INTO users (email, name, role, password_hash, active, created_at, updated_at) "
            "SELECT kind || n || '@example.org', kind || ' ' || n, 'uploader', '', true, now(), now() "
            "FROM generate_series(1, :n) AS n, (VALUES ('crowd'), ('elsewhere')) AS k(kind)"), {"n": over})
        db.session.commit()
        crowd = db.session.scalars(select(User.id).where(User.email.like("crowd%")).order_by(User.id).limit(5)).all()
        apart = db.session.scalars(select(User.id).where(User.email.like("elsewhere%")).limit(2)).all()
    for n, uid in enumerate(crowd):
        insert(app, uid, 1 + n % 2)
        insert(app, uid, 1, status="approved", decided_by_id=ids["reviewer"])
    for uid in apart:
        insert(app, uid, 2)
    with app.app_context():
        engine, statements = db.engine, []

        def seen(conn, cursor, statement, *args):
            statements.append(statement)
        event.listen(engine, "before_cursor_execute", seen)
        try:
            page = review.queue(review.QueueFilters(uploader="CROWD"), ids["reviewer"])
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        expected = db.session.scalars(
            select(Submission.id).join(User, User.id == Submission.user_id)
            .where(Submission.status == "in_review", User.email.like("crowd%"))
            .order_by(Submission.created_at, Submission.id)).all()
    assert [r.id for r in page.items] == expected and len(expected) == 7
    assert page.counts["in_review"] == 7 and page.counts["approved"] == 5
    on_submissions = [s for s in statements if "FROM submissions" in s]
    assert on_submissions and not [s for s in on_submissions if "users" in s.split("FROM submissions", 1)[1]]
