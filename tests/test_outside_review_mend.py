"""From the outside pass of the queue filter's review mend (`matching` via icontains, one
status_counts for both databases): per-status counts against a plain SQL join, on PostgreSQL and
SQLite. The fixture's users cover the few / complement / both-large uploader paths."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, insert as sa_insert, select

from core.platform.db import db
from core.platform.models import SUBMISSION_STATES, Submission, User
from core.review import queue_query as qq
from tests.conftest import app_on_migrations

NAMES = {"strasse": "Straße Weg", "ilker": "İlker Yılmaz", "nikos": "ΝΙΚΟΣ ΠΑΠΑΣ", "elodie": "Élodie Ñúñez",
         "pct": "100% Pure", "pct2": "100x Pure", "us": "a_b", "us2": "axb", "bs": "back\\slash", "bs2": "backslash",
         "sl": "sl/ash", "sl2": "slash", "q": "O'Brien", "big": "Big Uploader"}

# typed -> keys of NAMES expected (names only; e-mails are uNN@example.org and never match these)
CASES = {
    "Straße": ["strasse"], "straße": ["strasse"], "İlker Yılmaz": ["ilker"], "ΝΙΚΟΣ ΠΑΠΑΣ": ["nikos"],
    "Élodie": ["elodie"], "100%": ["pct"], "a_b": ["us"], "k\\s": ["bs"], "l/a": ["sl"], "o'bri": ["q"],
    "BIG upl": ["big"], "%": ["pct"], "_": ["us"], "\\": ["bs"], "/": ["sl"], "'": ["q"],
}


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request, tmp_path):
    with app_on_migrations(request.param, tmp_path, "outside_review") as app:
        from core.points.catalogue import seed_catalogue

        seed_catalogue()
        ids = {}
        for i, (key, name) in enumerate(NAMES.items()):
            user = User(email=f"u{i}@example.org", name=name, role="uploader")
            db.session.add(user)
            db.session.flush()
            ids[key] = user.id
        reviewer = User(email="rev@example.org", name="Rev", role="reviewer")
        db.session.add(reviewer)
        db.session.flush()
        ids["reviewer"] = reviewer.id
        # 1,100 bulk users, 550 "Even" and 550 "Odd": a few / complement / both-large uploader paths.
        db.session.execute(sa_insert(User), [{"email": f"bulk{i}@example.org", "name": f"Bulk {'Even' if i % 2 == 0 else 'Odd'} {i}",
                                               "role": "uploader"} for i in range(1100)])
        bulk = db.session.scalars(select(User.id).where(User.email.like("bulk%")).order_by(User.id)).all()
        start = datetime(2024, 1, 1, tzinfo=timezone.utc)
        now = datetime.now(timezone.utc)
        rows = []
        n = 0

        def add(uid, status, **kw):
            nonlocal n
            rows.append(dict(user_id=uid, activity_code="EXPLORE", status=status,
                             session_date=date(2024, 1, 1) + timedelta(days=n % 40),
                             created_at=start + timedelta(minutes=n), counters={}, **kw))
            n += 1

        for key in NAMES:
            if key == "big":
                continue
            for j, status in enumerate(SUBMISSION_STATES):
                for _ in range(j + 1):
                    add(ids[key], status, **({"decided_by_id": ids["reviewer"]} if status == "approved" else {}))
        for _ in range(1005):
            add(ids["big"], "in_review", claimed_by_id=ids["reviewer"], claim_expires_at=now + timedelta(hours=1))
        for _ in range(1003):
            add(ids["big"], "approved", decided_by_id=ids["reviewer"])
        for k, uid in enumerate(bulk):
            add(uid, SUBMISSION_STATES[k % len(SUBMISSION_STATES)])
        db.session.execute(sa_insert(Submission), rows)
        db.session.commit()
        ids["bulk_even"] = bulk[0::2]
        ids["bulk"] = bulk
        yield app, ids


def reference(user_ids, *, reviewed=None, claimed=None, date_from=None, date_to=None) -> dict[str, int]:
    """Per-status counts by a plain join, capped as the queue caps them (COUNT_CAP + 1 = "1000+")."""
    q = select(Submission.status, func.count()).join(User, User.id == Submission.user_id)
    if user_ids is not None:
        q = q.where(User.id.in_(user_ids))
    if reviewed:
        q = q.where(Submission.decided_by_id == reviewed)
    if claimed:
        q = q.where(Submission.claimed_by_id == claimed, Submission.claim_expires_at >= datetime.now(timezone.utc))
    if date_from:
        q = q.where(Submission.session_date >= date_from)
    if date_to:
        q = q.where(Submission.session_date <= date_to)
    got = dict(db.session.execute(q.group_by(Submission.status)).all())
    return {s: min(got.get(s, 0), qq.COUNT_CAP + 1) for s in SUBMISSION_STATES}


def counts(ids, **kw):
    return qq.queue(qq.QueueFilters(**kw), ids["reviewer"]).counts


@pytest.mark.parametrize("typed", ["élodie", "ÉLODIE ñ"])
def test_a_name_in_another_case_finds_its_uploader(env, typed):
    """Mixed case of non-ASCII letters: a reviewer who types "élodie" for "Élodie Ñúñez". PostgreSQL
    (ILIKE) found her; SQLite's own lower() folds ASCII only, so SQLite found no one until
    core.platform.db.unicode_lower_on_sqlite gave its connections Python's."""
    app, ids = env
    assert counts(ids, uploader=typed) == reference([ids["elodie"]]), (db.engine.dialect.name, typed)
