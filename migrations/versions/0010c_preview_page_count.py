"""a PDF preview remembers how many pages its document has

PDF previews are made in two stages (page 1 committed, then pages 2-5). If the worker dies or
storage fails between the two, the file kept page 1 alone, and nothing knew more were owed. With
the document's page count stored beside the pages made, the preview sweeper finds such files and
the job adds the missing pages (core/evidence/previews.py).

Revision ID: 0010c_pages
Revises: 0010b_phash
"""
import sqlalchemy as sa
from alembic import op

revision = '0010c_pages'
down_revision = '0010b_phash'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preview_page_count', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        batch_op.drop_column('preview_page_count')
