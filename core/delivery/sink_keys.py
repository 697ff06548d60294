"""Each sink's record of the outbox keys it applied, kept in the database (table `sink_keys`).

It used to live in Redis (`cache:seen`, `analytics:seen`), so a Redis that lost its data made
`flask outbox replay` apply every key a second time, and the sets grew for ever. Here it lives
with the data, and is trimmed on one rule:

- A key is deleted once it was applied more than `REPLAY_HORIZON_DAYS + TRIM_MARGIN_DAYS` days
  ago. `flask outbox replay` never resets a record created before the horizon
  (core.delivery.outbox.replay), and a record is applied after it is created, so every record a
  replay can reset still has its key; the margin covers a replay whose delivery runs late.

The statements run on a connection of their own in autocommit, not in the delivery's
transaction: a key noted as being written must survive a worker killed before that transaction
commits, which is the whole point of noting it.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import any_, bindparam, delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from core.platform.db import db, is_postgres, utcnow
from core.platform.models import SinkKey

REPLAY_HORIZON_DAYS = 90
TRIM_MARGIN_DAYS = 1
_KEYS_PER_STATEMENT = 1000  # a batch of keys per IN list, whatever the outbox batch size


def replay_horizon(now: datetime | None = None) -> datetime:
    """The oldest outbox `created_at` that `flask outbox replay` still resets."""
    return (now or utcnow()) - timedelta(days=REPLAY_HORIZON_DAYS)


def _connection():
    return db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _chunks(keys: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(keys), _KEYS_PER_STATEMENT):
        yield keys[start:start + _KEYS_PER_STATEMENT]


def one_of(column, values: list):
    """`column IN values`; on PostgreSQL `column = ANY(:array)`, one parameter however many values
    (an expanded IN of 500 parameters cost more to build than to run)."""
    if is_postgres():
        return column == any_(bindparam(None, value=list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def lookup(sink: str, keys: list[str]) -> tuple[set[str], dict[str, int]]:
    """(applied keys, {key: file offset} of keys noted as being written) among `keys`."""
    applied: set[str] = set()
    writing: dict[str, int] = {}
    table = SinkKey.__table__
    with _connection() as conn:
        for chunk in _chunks(keys):
            rows = conn.execute(select(table.c.idempotency_key, table.c.file_offset)
                                .where(table.c.sink == sink, one_of(table.c.idempotency_key, chunk)))
            for key, offset in rows:
                if offset is None:
                    applied.add(key)
                else:
                    writing[key] = offset
    return applied, writing


_CLAIM_PG = text(
    "INSERT INTO sink_keys (sink, idempotency_key, file_offset, applied_at) "
    "SELECT :sink, k, :offset, :stamp FROM unnest(CAST(:keys AS varchar[])) AS k "
    "ON CONFLICT (sink, idempotency_key) DO NOTHING RETURNING idempotency_key")


def claim(sink: str, keys: list[str], offset: int) -> tuple[set[str], set[str], dict[str, int]]:
    """Note `keys` as being written from `offset` (committed at once), except keys already known.
    Returns (keys noted now: write them; keys already applied; {key: offset} of keys a writer
    noted and never confirmed). The usual first delivery costs one INSERT."""
    stamp = utcnow()
    noted: set[str] = set()
    with _connection() as conn:
        if is_postgres():  # one statement and three parameters, whatever the batch size
            noted.update(conn.execute(_CLAIM_PG, {"sink": sink, "keys": keys, "offset": offset, "stamp": stamp}).scalars())
        else:
            table = SinkKey.__table__
            statement = (sqlite.insert(table).on_conflict_do_nothing(index_elements=[table.c.sink, table.c.idempotency_key])
                         .returning(table.c.idempotency_key))
            for key in keys:
                noted.update(conn.execute(statement, {"sink": sink, "idempotency_key": key, "file_offset": offset,
                                                      "applied_at": stamp}).scalars())
    known = [k for k in keys if k not in noted]
    applied, writing = lookup(sink, known) if known else (set(), {})
    return noted, applied, writing


@functools.cache
def _upsert(postgres: bool):
    table = SinkKey.__table__
    insert = (postgresql.insert if postgres else sqlite.insert)(table)
    return insert.on_conflict_do_update(index_elements=[table.c.sink, table.c.idempotency_key],
                                        set_={"file_offset": insert.excluded.file_offset,
                                              "applied_at": insert.excluded.applied_at})


def note_writing(sink: str, keys: list[str], offset: int) -> None:
    """Before a write: these keys' lines start at or after `offset` (committed at once)."""
    if not keys:
        return
    stamp = utcnow()
    with _connection() as conn:
        conn.execute(_upsert(is_postgres()), [{"sink": sink, "idempotency_key": k, "file_offset": offset,
                                               "applied_at": stamp} for k in keys])


def mark_applied(sink: str, keys: list[str]) -> None:
    """After the write: keys noted by note_writing are applied now (one UPDATE per 1,000 keys)."""
    if not keys:
        return
    stamp = utcnow()
    table = SinkKey.__table__
    with _connection() as conn:
        for chunk in _chunks(keys):
            conn.execute(update(table).where(table.c.sink == sink, one_of(table.c.idempotency_key, chunk))
                         .values(file_offset=None, applied_at=stamp))


def trim(now: datetime | None = None, batch_size: int = 10_000) -> int:
    """Delete applied keys older than the replay horizon plus the margin, `batch_size` at a
    time (each its own short statement). Returns how many were deleted."""
    cutoff = replay_horizon(now) - timedelta(days=TRIM_MARGIN_DAYS)
    table = SinkKey.__table__
    total = 0
    with _connection() as conn:
        while True:
            old = conn.execute(select(table.c.sink, table.c.idempotency_key)
                               .where(table.c.applied_at < cutoff, table.c.file_offset.is_(None))
                               .limit(batch_size)).all()
            if not old:
                return total
            conn.execute(delete(table).where(table.c.sink == bindparam("s"),
                                             table.c.idempotency_key == bindparam("k")),
                         [{"s": s, "k": k} for s, k in old])
            total += len(old)

