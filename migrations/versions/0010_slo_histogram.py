"""pre-aggregated Kajabi figures for /api/slo and /metrics

kajabi_latency_hist_5m, kajabi_latency_hist (per hour of receipt) and kajabi_latency_hist_day
(per day): tag -> ledger latencies counted per bucket (core.points.latency_hist); kajabi_state_counts: events per state,
`received` excepted. Written in the transactions that ledger events, so the 28-day figure reads a
few thousand rows instead of every event (issue 18, goal 4).

The state counts are filled here (one GROUP BY over the events: seconds at 10M). The histogram is
not: it needs the application's bucket edges; run `flask slo backfill` once after upgrading
(docs/operations.md). Until then the figures count only events ledgered since the upgrade.

Revision ID: 0010_slo_hist
Revises: 0010c_pages
"""
import sqlalchemy as sa
from alembic import op

revision = '0010_slo_hist'
down_revision = '0010c_pages'
branch_labels = None
depends_on = None


def _when():
    return sa.DateTime(timezone=True)


def upgrade():
    op.create_table('kajabi_latency_hist_5m',
                    sa.Column('start', _when(), nullable=False),
                    sa.Column('bucket', sa.SmallInteger(), nullable=False),
                    sa.Column('n', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('start', 'bucket'))
    op.create_table('kajabi_latency_hist',
                    sa.Column('hour', _when(), nullable=False),
                    sa.Column('bucket', sa.SmallInteger(), nullable=False),
                    sa.Column('n', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('hour', 'bucket'))
    op.create_table('kajabi_latency_hist_day',
                    sa.Column('day', _when(), nullable=False),
                    sa.Column('bucket', sa.SmallInteger(), nullable=False),
                    sa.Column('n', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('day', 'bucket'))
    op.create_table('kajabi_state_counts',
                    sa.Column('state', sa.String(length=24), nullable=False),
                    sa.Column('n', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('state'))
    if op.get_bind().dialect.name == 'postgresql':
        # A window reads a few thousand rows of each: starting parallel workers for that cost
        # 15 ms on 2 cores for 1 ms of work.
        for table in ('kajabi_latency_hist_5m', 'kajabi_latency_hist', 'kajabi_latency_hist_day'):
            op.execute(f"ALTER TABLE {table} SET (parallel_workers = 0)")
    op.execute("INSERT INTO kajabi_state_counts (state, n) SELECT state, count(*) FROM kajabi_events "
               "WHERE state <> 'received' GROUP BY state")


def downgrade():
    op.drop_table('kajabi_state_counts')
    op.drop_table('kajabi_latency_hist_day')
    op.drop_table('kajabi_latency_hist')
    op.drop_table('kajabi_latency_hist_5m')
