"""notifications (one row per e-mail, unique idempotency key), users.notify_email, and
pending_uploads (the good files of a refused form, kept for the retry)

Corrections need no schema: each change is an audit event with its old and new value, and the
submission's revision counts resends.

Revision ID: 0008_notify
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0008_notify'
down_revision = '0004_evidence'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notify_email', sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_table(
        'notifications',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('idempotency_key', sa.String(length=255), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notifications_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
        sa.UniqueConstraint('idempotency_key', name=op.f('uq_notifications_idempotency_key')),
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_state_created', ['state', 'created_at'], unique=False)
    op.create_table(
        'pending_uploads',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('storage_key', sa.String(length=512), nullable=False),
        sa.Column('original_name', sa.String(length=255), nullable=False),
        sa.Column('content_type', sa.String(length=100), nullable=False),
        sa.Column('size_bytes', BIG_ID, nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_pending_uploads_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_uploads')),
        sa.UniqueConstraint('storage_key', name=op.f('uq_pending_uploads_storage_key')),
    )
    with op.batch_alter_table('pending_uploads', schema=None) as batch_op:
        batch_op.create_index('ix_pending_uploads_user_created', ['user_id', 'created_at'], unique=False)
        batch_op.create_index('ix_pending_uploads_created', ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('pending_uploads', schema=None) as batch_op:
        batch_op.drop_index('ix_pending_uploads_created')
        batch_op.drop_index('ix_pending_uploads_user_created')
    op.drop_table('pending_uploads')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_state_created')
    op.drop_table('notifications')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('notify_email')
