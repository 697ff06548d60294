"""reviewer previews per evidence file, and a perceptual hash per image for near-duplicates

preview_state / preview_reason / preview_pages record each file's preview outcome (made, or
failed with its reason), so a page never waits for ever.

Near-duplicate look-up. A 64-bit pHash is split into four 16-bit bands, each its own indexed
INTEGER column. By the pigeonhole principle two hashes within Hamming distance 3 agree on at least
one band, so `b0 = :b0 OR b1 = :b1 OR b2 = :b2 OR b3 = :b3` (a BitmapOr of four index scans on
PostgreSQL, plain index look-ups on SQLite) finds every such candidate; the exact distance is then
checked on the few rows returned. Past distance 3 a match still shares a band unless its flipped
bits fall in all four bands; docs/near-duplicates.md measures how often that happens at the
threshold used. Why not the alternatives: a btree on the whole hash only finds equal hashes; a
Hamming operator needs an extension (pg_similarity / bktree) that SQLite and a stock PostgreSQL
lack; eight 8-bit bands catch distance 7 surely but each band value is shared by 1/256 of all
images, so every look-up would read thousands of rows at a million files (16-bit: ~15 per band).

A plain index on sha256 serves the exact-repeat look-up, which used to scan the table.
near_duplicate_of_id keeps the nearest earlier image found when the file was hashed, so the queue
marks a page's rows with one query instead of a band look-up per file.

Band values are probed within one bit flip (17 values per band), which finds every pair up to 7
bits apart; see core/evidence/duplicates.py and docs/near-duplicates.md for the measured recall at
the default threshold of 8 bits.

Revision ID: 0007_previews
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = '0007_previews'
down_revision = '0005_delivery'
branch_labels = None
depends_on = None

BANDS = ('phash_b0', 'phash_b1', 'phash_b2', 'phash_b3')
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preview_state', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('preview_reason', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('preview_pages', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('phash', sa.BigInteger(), nullable=True))
        for band in BANDS:
            batch_op.add_column(sa.Column(band, sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('near_duplicate_of_id', BIG_ID, nullable=True))
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        batch_op.create_index('ix_evidence_files_sha256', ['sha256'], unique=False)
        for band in BANDS:
            batch_op.create_index(f'ix_evidence_files_{band}', [band], unique=False)


def downgrade():
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        for band in BANDS:
            batch_op.drop_index(f'ix_evidence_files_{band}')
        batch_op.drop_index('ix_evidence_files_sha256')
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        batch_op.drop_column('near_duplicate_of_id')
        for band in reversed(BANDS):
            batch_op.drop_column(band)
        batch_op.drop_column('phash')
        batch_op.drop_column('preview_pages')
        batch_op.drop_column('preview_reason')
        batch_op.drop_column('preview_state')
