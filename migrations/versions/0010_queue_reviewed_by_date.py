""""reviewed by me" sorted by session date has an index of its own

The queue's "reviewed by me" filter (decided_by_id) with the session-date sort walked the
(status, session_date, id) index and fetched every row of the status in the date range to find
the reviewer's: 4,054 rows for 51 shown at 1M submissions, about 20,000 at 5M, where "everything
at once" read p95 65.8 ms (docs/performance.md). Led by decided_by_id, the reviewer's rows come
in keyset order and the walk stops after the page: 159 buffers instead of 4,329 at 1M.

On PostgreSQL the index is built CONCURRENTLY, so uploads and decisions are not blocked while it
builds; elsewhere (SQLite) in the usual batch.

Revision ID: 0010_queue
Revises: 0009_perf
"""
from alembic import op

from migrations import online_index

revision = '0010_queue'
down_revision = '0009_perf'
branch_labels = None
depends_on = None

NAME = 'ix_submissions_decided_by_status_session_date_id'
COLUMNS = ['decided_by_id', 'status', 'session_date', 'id']


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        with op.get_context().autocommit_block():
            online_index.create_index(NAME, 'submissions', COLUMNS)
        return
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.create_index(NAME, COLUMNS, unique=False)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        with op.get_context().autocommit_block():
            online_index.drop_index(NAME, 'submissions')
        return
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_index(NAME)
