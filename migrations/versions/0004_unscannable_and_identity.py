"""unscannable files and their reason, stored thumbnail outcomes, one spelling per e-mail address

- evidence_files.scan_reason: why a file is `unscannable` (the scanner stopped at its limits or
  refused the file); thumbnail_state (made | failed) and thumbnail_error, so a thumbnail that
  cannot be made is a final answer instead of "not ready" for ever. Rows that already have a
  thumbnail are marked made.
- users.email and kajabi_events.email are rewritten to the one form sign-in compares (Unicode
  NFC, trimmed, casefolded). If two accounts would end up with the same address the migration
  stops, lists them, and changes nothing: merging people is a decision for an admin, not for a
  migration (see docs/operations.md, "Accounts that collide").

Revision ID: 0004_evidence
Revises: 0002
"""
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = '0004_evidence'
down_revision = '0002'
branch_labels = None
depends_on = None


def _canonical(email):
    # Frozen copy of core.accounts.users.normalise_email as of this revision: a migration must
    # keep doing what it did when it ran, whatever the app's code becomes later.
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", (email or "").strip()).casefold())


class AccountsCollide(RuntimeError):
    """Raised with the report; alembic prints it and exits non-zero, so nothing is applied."""


def collision_report(rows):
    """[(id, email)] -> the report lines for addresses that collide once normalised ([] if none)."""
    groups = {}
    for user_id, email in rows:
        groups.setdefault(_canonical(email), []).append((user_id, email))
    lines = []
    for canonical, members in sorted(groups.items()):
        if len(members) > 1:
            spelled = ", ".join(f"id {i} {e!r}" for i, e in sorted(members))
            lines.append(f"  {canonical}: {spelled}")
    return lines


def _normalise_emails(conn):
    users = conn.execute(sa.text("SELECT id, email FROM users ORDER BY id")).all()
    report = collision_report(users)
    if report:
        raise AccountsCollide(
            "migration 0004 stopped: these accounts share one e-mail address once spelled the same way "
            "(Unicode NFC, trimmed, case-insensitive). Merge or rename them (docs/operations.md, "
            "'Accounts that collide'), then run `flask db upgrade` again. Nothing was changed.\n"
            + "\n".join(report))
    for user_id, email in users:
        if _canonical(email) != email:
            conn.execute(sa.text("UPDATE users SET email = :e WHERE id = :i"), {"e": _canonical(email), "i": user_id})
    events = conn.execute(sa.text("SELECT id, email FROM kajabi_events WHERE email IS NOT NULL")).all()
    for event_id, email in events:
        if _canonical(email) != email:
            conn.execute(sa.text("UPDATE kajabi_events SET email = :e WHERE id = :i"),
                         {"e": _canonical(email), "i": event_id})


def upgrade():
    # First, before any schema change: on SQLite, DDL is not rolled back with the transaction.
    _normalise_emails(op.get_bind())
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scan_reason', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('thumbnail_state', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('thumbnail_error', sa.String(length=255), nullable=True))
    op.execute("UPDATE evidence_files SET thumbnail_state = 'made' WHERE thumbnail_key IS NOT NULL")


def downgrade():
    # Addresses stay in their normalised form (there is no way back to each one's old spelling).
    # The old code compares lower-cased input with them, which matches every address except the
    # few whose casefold differs from their lower case ("ß" -> "ss").
    with op.batch_alter_table('evidence_files', schema=None) as batch_op:
        batch_op.drop_column('thumbnail_error')
        batch_op.drop_column('thumbnail_state')
        batch_op.drop_column('scan_reason')
