"""A migration whose CREATE INDEX CONCURRENTLY was cut short can be run again and leaves a usable
index (migrations/online_index.py). PostgreSQL keeps such an index, marked invalid and never read;
`IF NOT EXISTS` alone skipped it, so the upgrade reported success over an index no query used."""
import psycopg
import pytest
from flask_migrate import downgrade, stamp, upgrade
from sqlalchemy import text

from core.platform.db import db
from tests.conftest import app_on_migrations

INDEX = "ix_submissions_user_status"  # migration 0011_user_status
BEFORE = "0010_slo_hist"


def _validity(name: str):
    return db.session.execute(text(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :n"),
        {"n": name}).scalar()


def _cut_short_build(dsn: str) -> None:
    """CREATE INDEX CONCURRENTLY cancelled part-way, as a statement timeout or a killed deploy
    leaves it: an older snapshot held open makes the build wait, and the timeout cancels it."""
    with psycopg.connect(dsn) as holder, psycopg.connect(dsn, autocommit=True) as builder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM users").fetchone()  # keeps its snapshot until rollback
        builder.execute("SET statement_timeout = '300ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            builder.execute(f"CREATE INDEX CONCURRENTLY {INDEX} ON submissions (user_id, status)")
        holder.rollback()


def test_an_index_left_invalid_by_a_cut_short_build_is_rebuilt_by_the_next_upgrade(tmp_path):
    with app_on_migrations("postgresql", tmp_path, "online_index"):
        downgrade(revision=BEFORE)
        db.session.remove()
        assert _validity(INDEX) is None
        _cut_short_build(db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
        assert _validity(INDEX) is False  # the state the deploy left behind
        db.session.remove()

        upgrade()

        db.session.remove()
        assert _validity(INDEX) is True
        db.session.execute(text("SET enable_seqscan = off"))  # an empty table: only the index is in question
        plan = db.session.execute(text(
            "EXPLAIN SELECT 1 FROM submissions WHERE user_id = 7 AND status = 'revoked'")).scalars().all()
        assert any(INDEX in line for line in plan), plan


def test_a_valid_index_is_left_as_it_is(tmp_path):
    """0011 run again over a database that has its index, valid (stamped back, as after a deploy
    whose version row was lost), neither drops nor rebuilds it: the same index, by its oid."""
    with app_on_migrations("postgresql", tmp_path, "online_index_kept"):
        oid = db.session.execute(text("SELECT CAST(:n AS regclass)::oid"), {"n": INDEX}).scalar()
        db.session.remove()
        downgrade(revision="0011_user_status")  # 0012 only: 0011's index stays
        stamp(revision=BEFORE)
        upgrade()
        db.session.remove()
        assert db.session.execute(text("SELECT CAST(:n AS regclass)::oid"), {"n": INDEX}).scalar() == oid
        assert _validity(INDEX) is True
