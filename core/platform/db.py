"""The SQLAlchemy instance, the small session helpers every door uses, and the pool's check that
a pooled PostgreSQL connection is still alive (drop_dead_on_checkout)."""
from __future__ import annotations

import select
from datetime import datetime, timezone

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import ARRAY, MetaData, all_, any_, bindparam, cast, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import DateTime, Integer, NullType, TypeDecorator

# Named constraints so Alembic can drop and alter them on SQLite too (batch mode needs names).
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both engines (SQLite drops tzinfo on the way back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        if value is not None:
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return as_utc(value)


def as_utc(value: datetime | None) -> datetime | None:
    """A timestamp read from the database, in UTC whatever the session's TimeZone: PostgreSQL
    returns timestamptz in it, and code that floors to hours or days (the SLO histogram) would cut
    them in local time. A naive value (SQLite drops tzinfo) is UTC already. For raw driver rows
    too, which skip UTCDateTime."""
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc) if value is not None else None


def is_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def ids_in(column, ids: list[int], *, negate: bool = False):
    """`column IN (ids)` (`NOT IN` with negate) as one array parameter on PostgreSQL (`= ANY`,
    `<> ALL`), which plans the same index scan. An IN list binds and plans one parameter per id in
    each statement it appears in: the queue's counts repeat it six times, so 111 uploader ids
    were about 700 parameters and 3 ms of planning a page. The array goes as one text parameter,
    '{1,2,3}', cast to the column's array type: the planner still sees a constant array, and
    psycopg's list dumper, which works element by element in Python, is skipped (3.8 ms of CPU
    per statement for 3,441 ids; docs/performance.md, "Seventh session"). `ids` are ids as read
    from the database: each goes through int(), so only digits reach the literal (a str that is
    not a number raises ValueError). Other databases: a plain IN."""
    if is_postgres():
        literal = "{" + ",".join(map(str, map(int, ids))) + "}"
        # Untyped, so psycopg sends it as `unknown` and PostgreSQL reads the array while parsing;
        # typed as text, the cast stayed in the plan and was evaluated row by row.
        array = cast(bindparam(None, literal, type_=NullType()), ARRAY(column.type))
        return column != all_(array) if negate else column == any_(array)
    return column.not_in(ids) if negate else column.in_(ids)


class _position(FunctionElement):
    """position_of(haystack, needle): 1-based place of `needle` in `haystack`, 0 when absent, NULL
    when either is NULL. PostgreSQL's strpos(), SQLite's instr() (the same function under two
    names; SQLAlchemy's compiler extension picks one per dialect)."""
    type = Integer()
    name = "position_of"
    inherit_cache = True


@compiles(_position)
def _position_default(element, compiler, **kw):
    return f"instr({compiler.process(element.clauses, **kw)})"


@compiles(_position, "postgresql")
def _position_pg(element, compiler, **kw):
    return f"strpos({compiler.process(element.clauses, **kw)})"


def contains_text(haystack, needle):
    """SQL condition: `needle` (a string or SQL expression) occurs in `haystack`, as a plain
    substring: no wildcard, no escape character to get right, case as given (lower both sides
    for a case-insensitive test). NULL (no match) when `haystack` is NULL."""
    return _position(haystack, needle) > 0


def unicode_lower_on_sqlite(engine: Engine) -> None:
    """Give every SQLite connection of `engine` a lower() that folds every letter (Python's
    str.lower), not ASCII alone (SQLite's own, sqlite.org/lang_corefunc.html#lower): without it,
    the uploader filter (lower() of the typed text against `users.name_lower`, itself lower(name))
    found "Élodie" typed "élodie" on PostgreSQL and not on SQLite. Deterministic, so SQLite may
    still use it in indexes and constant folding."""
    @event.listens_for(engine, "connect")
    def _lower(dbapi_connection, _record) -> None:
        dbapi_connection.create_function("lower", 1, _fold, deterministic=True)


def _fold(value):
    return value.lower() if isinstance(value, str) else value


def server_has_spoken(dbapi_connection) -> bool:
    """True when an idle pooled connection's socket is readable (or closed). A server sends nothing
    to an idle session unasked except when it ends it: a restart or a terminated backend sends a
    FATAL notice and closes, a killed one just closes. No round trip: one poll(2) with no wait."""
    try:
        fd = dbapi_connection.fileno()
    except Exception:  # psycopg raises once the connection is closed
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))  # POLLHUP and POLLERR are reported whatever was registered


def drop_dead_on_checkout(engine: Engine) -> None:
    """Replace, at checkout, a pooled connection the server has closed (server_has_spoken), so the
    first request after a PostgreSQL restart gets a fresh connection instead of an error. This is
    instead of `pool_pre_ping`, whose SELECT 1 cost a round trip on every checkout (about a fifth
    of a Kajabi hook's CPU). What neither catches, a server dying between the checkout and the
    statement, SQLAlchemy handles as a disconnect: that connection and the pool are invalidated
    and the request answers 503 (api/errors.py). A false alarm (a NOTICE sent unasked) only costs
    a reconnect."""

    @event.listens_for(engine, "checkout")
    def _drop_dead(dbapi_connection, _record, _proxy) -> None:
        if server_has_spoken(dbapi_connection):
            # The pool discards this one and checks out a new connection in its place.
            raise DisconnectionError("the server closed this pooled connection")
