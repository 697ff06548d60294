"""What each queue row shows beyond its submission: how many files of which types, and whether a
file repeats or resembles earlier evidence (core.evidence.duplicates). One grouped query per page
for the files, one for the reuse marks."""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, func, select

from core.evidence import duplicates
from core.platform.db import db
from core.platform.models import EvidenceFile


# Built once, the ids bound per page (building a statement costs more than running this one).
_KINDS = (select(EvidenceFile.submission_id, EvidenceFile.ext, func.count())
          .where(EvidenceFile.submission_id.in_(bindparam("ids", expanding=True)), EvidenceFile.deleted_at.is_(None))
          .group_by(EvidenceFile.submission_id, EvidenceFile.ext))


def file_kinds(submission_ids: Iterable[int]) -> dict[int, tuple[int, list[str]]]:
    """{submission id: (live file count, sorted distinct extensions)}."""
    ids = list(submission_ids)
    if not ids:
        return {}
    rows = db.session.execute(_KINDS, {"ids": ids}).all()
    out: dict[int, tuple[int, list[str]]] = {}
    for sid, ext, n in rows:
        count, exts = out.get(sid, (0, []))
        out[sid] = (count + n, sorted(exts + [ext.upper()]))
    return out


def reused(submission_ids: Iterable[int]) -> set[int]:
    """Submissions with a file that repeats (same SHA-256) another submission's file, or that
    resembled an earlier image when it was hashed."""
    return duplicates.submissions_with_matches(submission_ids)
