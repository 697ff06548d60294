"""Indexes built and dropped CONCURRENTLY on PostgreSQL, so that a run cut short can simply be run
again.

A CREATE INDEX CONCURRENTLY that fails or is cancelled part-way (a statement timeout, a deadlock, a
killed deploy, a lost connection) leaves the index behind, marked invalid: PostgreSQL keeps it up to
date on every write but never reads from it. `IF NOT EXISTS` then skips it on the next run, so the
migration would report success with the index still unusable. PostgreSQL's own advice is to drop
it and build it again (docs, "CREATE INDEX", "Building Indexes Concurrently"); these helpers do that.
An interrupted DROP INDEX CONCURRENTLY also leaves an invalid index, which `if_exists` drops on the
next run as it is.

Imported by the migration scripts as `migrations.online_index` (the project root is on sys.path
wherever `flask db upgrade` runs). Call inside `op.get_context().autocommit_block()`: PostgreSQL
refuses CONCURRENTLY inside a transaction.
"""
import sqlalchemy as sa
from alembic import op


def invalid(name: str) -> bool:
    """True when an index called `name` exists in the current schema and PostgreSQL marks it
    invalid (pg_index.indisvalid false: a concurrent build or drop that did not finish)."""
    valid = op.get_bind().execute(sa.text(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace"), {"name": name}).scalar()
    return valid is False


def create_index(name: str, table: str, columns: list, **kw) -> None:
    """CREATE INDEX CONCURRENTLY IF NOT EXISTS `name` ON `table` (`columns`), after dropping an
    invalid index of that name left by an earlier run (`kw`: alembic's create_index options, such
    as postgresql_where). PostgreSQL only."""
    if invalid(name):
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
    op.create_index(name, table, columns, unique=False, postgresql_concurrently=True, if_not_exists=True, **kw)


def drop_index(name: str, table: str) -> None:
    """DROP INDEX CONCURRENTLY IF EXISTS `name` (valid or not). PostgreSQL only."""
    op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
