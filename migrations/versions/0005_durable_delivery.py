"""durable delivery: the sinks' applied keys in the database, and when a Kajabi event became matchable

`sink_keys` is each sink's record of the outbox keys it applied (so a Redis that loses its data
cannot make a replay apply them twice); `file_offset` is set while a key's line is being written
to the analytics file and cleared once it is there. `applied_at` drives the trim
(core.delivery.sink_keys.trim). `kajabi_events.matchable_at` is when the event could first be
matched (its arrival, or the creation of the user or tag mapping that matched it): the SLO's
tag -> ledger latency counts from there.

Revision ID: 0005_delivery
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0005_delivery'
down_revision = '0008_notify'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'sink_keys',
        sa.Column('sink', sa.String(length=32), nullable=False),
        sa.Column('idempotency_key', sa.String(length=255), nullable=False),
        sa.Column('file_offset', sa.BigInteger(), nullable=True),
        sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('sink', 'idempotency_key', name=op.f('pk_sink_keys')),
    )
    with op.batch_alter_table('sink_keys', schema=None) as batch_op:
        batch_op.create_index('ix_sink_keys_applied_at', ['applied_at'], unique=False)
    with op.batch_alter_table('kajabi_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('matchable_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('kajabi_events', schema=None) as batch_op:
        batch_op.drop_column('matchable_at')
    with op.batch_alter_table('sink_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_sink_keys_applied_at')
    op.drop_table('sink_keys')
