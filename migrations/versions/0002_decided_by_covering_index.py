"""the "reviewed by me" index also carries the queue's other filter columns

The queue's per-status counts under "reviewed by me" plus activity/date/uploader filters visited
the heap for every candidate row (~40 ms on 1M submissions); with these columns in the index they
are index-only. Same leading columns, so it replaces the old index rather than sitting beside it.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

OLD = ('ix_submissions_decided_by_status_created', ['decided_by_id', 'status', 'created_at'])
NEW = ('ix_submissions_decided_by_status_created_cover',
       ['decided_by_id', 'status', 'created_at', 'activity_code', 'session_date', 'user_id'])


def upgrade():
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.create_index(NEW[0], NEW[1], unique=False)
        batch_op.drop_index(OLD[0])


def downgrade():
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.create_index(OLD[0], OLD[1], unique=False)
        batch_op.drop_index(NEW[0])
