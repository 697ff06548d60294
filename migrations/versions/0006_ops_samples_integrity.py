"""ops samples for the dashboard; integrity sweep columns on evidence files

ops_samples: one row a minute of backlogs (in review, pending scans, outbox pending and lag,
unmatched Kajabi events, RQ queue depths), trimmed by the sampling job. evidence_files gains
last_verified_at, integrity_state and quarantined_at; the index serves the sweep's "never
verified, then least recently verified" order. kajabi_events gains an index on received_at for
the short SLO windows (5m..6h) that /api/slo?window= and the burn-rate gauges read.

Revision ID: 0006_ops
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = '0006_ops'
down_revision = '0007_previews'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        'ops_samples',
        sa.Column('id', BigId, nullable=False),
        sa.Column('taken_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('in_review', sa.Integer(), nullable=False),
        sa.Column('scans_pending', sa.Integer(), nullable=False),
        sa.Column('outbox_pending', sa.Integer(), nullable=False),
        sa.Column('outbox_lag_s', sa.Float(), nullable=True),
        sa.Column('unmatched', sa.Integer(), nullable=False),
        sa.Column('queue_depths', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ops_samples')),
        sa.UniqueConstraint('taken_at', name=op.f('uq_ops_samples_taken_at')),
    )
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_verified_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('integrity_state', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('quarantined_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(op.f('ix_evidence_files_last_verified_at'), ['last_verified_at'], unique=False)
    with op.batch_alter_table('kajabi_events', schema=None) as batch_op:
        batch_op.create_index('ix_kajabi_events_received_at', ['received_at'], unique=False)


def downgrade():
    with op.batch_alter_table('kajabi_events', schema=None) as batch_op:
        batch_op.drop_index('ix_kajabi_events_received_at')
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        batch_op.drop_index(op.f('ix_evidence_files_last_verified_at'))
        batch_op.drop_column('quarantined_at')
        batch_op.drop_column('integrity_state')
        batch_op.drop_column('last_verified_at')
    op.drop_table('ops_samples')
