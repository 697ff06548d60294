"""Migrations are the only way the schema changes; they run on PostgreSQL and SQLite, create
the playbook's indexes, and agree with the models."""
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from core.platform.db import db
from tests.conftest import app_on_migrations

REQUIRED_INDEXES = {
    "points_ledger": [("user_id", "activity_code"), ("activity_code", "external_source", "event_time"), ("created_at",)],
    "submissions": [("user_id", "activity_code", "status", "session_date"), ("status", "created_at")],
}
REQUIRED_UNIQUE = {
    "points_ledger": ("external_source", "external_event_id"),
    "outbox": ("idempotency_key",),
    "kajabi_events": ("event_id",),
}
TABLES = {"users", "activities", "activity_tags", "badges", "user_badges", "submissions", "evidence_files",
          "points_ledger", "outbox", "kajabi_events", "audit_events", "runs", "daily_rollups"}


def _column_sets(inspector, table):
    sets = {tuple(ix["column_names"]) for ix in inspector.get_indexes(table)}
    sets |= {tuple(uq["column_names"]) for uq in inspector.get_unique_constraints(table)}
    return sets


@pytest.fixture(params=["postgresql", "sqlite"])
def migrated_app(request, tmp_path):
    with app_on_migrations(request.param, tmp_path, "migrations") as app:
        yield app


def test_every_table_and_named_index_exists(migrated_app):
    inspector = inspect(db.engine)
    assert TABLES <= set(inspector.get_table_names())
    for table, indexes in REQUIRED_INDEXES.items():
        present = _column_sets(inspector, table)
        for columns in indexes:
            assert columns in present, f"{table} lacks an index on {columns} ({db.engine.dialect.name})"
    for table, columns in REQUIRED_UNIQUE.items():
        uniques = {tuple(uq["column_names"]) for uq in inspector.get_unique_constraints(table)}
        uniques |= {tuple(ix["column_names"]) for ix in inspector.get_indexes(table) if ix.get("unique")}
        assert columns in uniques, f"{table} lacks a unique constraint on {columns}"


def test_models_and_migrations_agree(migrated_app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


def test_downgrade_then_upgrade_round_trips(migrated_app):
    downgrade(revision="base")
    assert "points_ledger" not in inspect(db.engine).get_table_names()
    upgrade()
    assert "points_ledger" in inspect(db.engine).get_table_names()
