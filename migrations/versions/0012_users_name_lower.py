"""users carry their name lower-cased, for the uploader filter and the user search

The review queue's uploader filter and the admin's user search test every user's name against the
typed text. As `name ILIKE '%text%'`, PostgreSQL lower-cased every name on every filtered page:
8-10 ms of a 5M-submission queue page for 10,000 users, growing with the users. `name_lower` is
the name as the database's lower() gives it, kept by the database itself (a generated column), so
the test is a plain substring search: about 2 ms (docs/performance.md, "Eighth session").

PostgreSQL stores it (GENERATED ... STORED: adding it rewrites `users` once, under a lock, about a
second per million users). SQLite computes it when read (VIRTUAL; ALTER TABLE cannot add a stored
one), with the app's lower() (core.platform.db.unicode_lower_on_sqlite).

Revision ID: 0012_name_lower
Revises: 0011_user_status
"""
import sqlalchemy as sa
from alembic import op

revision = '0012_name_lower'
down_revision = '0011_user_status'
branch_labels = None
depends_on = None


def upgrade():
    stored = op.get_bind().dialect.name == 'postgresql'
    op.add_column('users', sa.Column('name_lower', sa.Text(), sa.Computed('lower(name)', persisted=stored),
                                     nullable=True))


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_column('users', 'name_lower')
        return
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('name_lower')
