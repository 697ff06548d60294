"""near-duplicate band indexes carry the hash: the look-up reads no table row it does not return

0007_previews indexed each 16-bit band of the pHash alone, so a look-up (core/evidence/
duplicates.py) was a BitmapOr of four index scans followed by a visit to the table for every
candidate: ~1,000 unrelated rows per look-up at a million images, and ~3,000 for an image with
thousands of near-copies (a certificate template), each on its own heap page. Measured at 1M
hashes (bench/near_lookup.py): p95 53 ms, max 153 ms, nearly all of it those heap reads.

These replace them with one index per band on (band, id, phash), partial on `phash IS NOT NULL`
(only images have a hash; PDFs and CSVs are left out). The same definition on both databases:
id second, so `id < :id` (earlier images only) is part of the index condition; phash last, so
the distance is checked on the index entry. On PostgreSQL the look-up is then four index-only scans whose
entries are filtered by the exact distance (bit_count of the XOR) and by id inside the index, and
only the nearest few survivors are joined to their rows. See docs/near-duplicates.md.

On PostgreSQL the indexes are built CONCURRENTLY (no lock on uploads while they build), and the
old ones dropped only once the new ones exist.

Revision ID: 0010b_phash
Revises: 0010_queue
"""
import sqlalchemy as sa
from alembic import op

from migrations import online_index

revision = '0010b_phash'
down_revision = '0010_queue'
branch_labels = None
depends_on = None

BANDS = ('phash_b0', 'phash_b1', 'phash_b2', 'phash_b3')
HAS_HASH = sa.text('phash IS NOT NULL')


def _covering(band: str) -> tuple[str, list[str], dict]:
    return (f'ix_evidence_files_{band}_hash', [band, 'id', 'phash'],
            {'postgresql_where': HAS_HASH, 'sqlite_where': HAS_HASH})


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        with op.get_context().autocommit_block():
            for band in BANDS:
                name, columns, extra = _covering(band)
                online_index.create_index(name, 'evidence_files', columns, **extra)
            for band in BANDS:
                online_index.drop_index(f'ix_evidence_files_{band}', 'evidence_files')
        return
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        for band in BANDS:
            name, columns, extra = _covering(band)
            batch_op.create_index(name, columns, unique=False, **extra)
            batch_op.drop_index(f'ix_evidence_files_{band}')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        with op.get_context().autocommit_block():
            for band in BANDS:
                online_index.create_index(f'ix_evidence_files_{band}', 'evidence_files', [band])
            for band in BANDS:
                online_index.drop_index(f'ix_evidence_files_{band}_hash', 'evidence_files')
        return
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        for band in BANDS:
            batch_op.create_index(f'ix_evidence_files_{band}', [band], unique=False)
            batch_op.drop_index(f'ix_evidence_files_{band}_hash')
