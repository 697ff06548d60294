"""the queue's counts under an uploader filter have a (user_id, status) index

The review queue counts each status under its filters, capped at 1,000. With an uploader filter
those counts went through the (user_id, activity_code, status, session_date) index, which keeps a
person's rows of every status together: to count a rare status (revoked, 2% of rows) it read
every row of each matching person. For 3,441 people at 1M submissions that was 14.7 ms for one
status; led by (user_id, status) the same count reads only the rows it counts: 2.7 ms
(docs/performance.md, "Seventh session").

On PostgreSQL the index is built CONCURRENTLY, so uploads and decisions are not blocked while it
builds; elsewhere (SQLite) in the usual batch.

Revision ID: 0011_user_status
Revises: 0010_slo_hist
"""
from alembic import op

from migrations import online_index

revision = '0011_user_status'
down_revision = '0010_slo_hist'
branch_labels = None
depends_on = None

NAME = 'ix_submissions_user_status'
COLUMNS = ['user_id', 'status']


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
