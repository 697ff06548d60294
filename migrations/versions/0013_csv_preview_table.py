"""a CSV's preview table is kept in its evidence_files row

The table (core/evidence/csv_preview.py) was an object under previews/<user>/<activity>/<uuid>/
table.json: a directory, a temporary file, an fsync and a rename in every CSV upload request,
about a tenth of the web's CPU per 1 MiB CSV (docs/performance.md, "Tenth session"). It is now a
nullable JSON column, written by the upload's own INSERT. Adding a nullable column without a
default changes the catalogue only, on PostgreSQL and SQLite alike: no table rewrite, no long lock.

Tables made before this revision stay objects: the portal reads the object when the column is
NULL (previews.read_table), and retention removes them as before.

Revision ID: 0013_csv_table
Revises: 0012_name_lower
"""
import sqlalchemy as sa
from alembic import op

revision = '0013_csv_table'
down_revision = '0012_name_lower'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('evidence_files', sa.Column('preview_table', sa.JSON(none_as_null=True), nullable=True))


def downgrade():
    # Tables made since the upgrade are in the column only: after a downgrade those CSVs show no
    # table (their preview says made; the portal finds no object and shows none).
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_column('evidence_files', 'preview_table')
        return
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        batch_op.drop_column('preview_table')
