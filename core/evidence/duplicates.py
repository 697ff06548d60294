"""Reused evidence: exact repeats (same SHA-256) and near-duplicate images (perceptual hash).

The hash is imagehash's pHash (64 bits: the signs of the lowest 8x8 DCT frequencies of a 32x32
grey image), which survives resizing, re-compression and recolouring; see docs/near-duplicates.md
for the measured distances and the threshold (NEAR_DUPLICATE_DISTANCE). Stored signed (PostgreSQL
BIGINT) with four 16-bit bands, each indexed (migration 0007_previews): candidates are rows sharing
any band, and the exact Hamming distance is checked here, so the database needs no bit operators.

Only earlier files count (lower id, another submission): the later upload is the one reusing
evidence, and the first uploader's submission is not flagged by a copy made of it.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import aliased

from core.platform.db import db
from core.platform.models import EvidenceFile

BITS = 64
BAND_BITS = 16
CANDIDATES_MAX = 2000  # per file: band collisions are ~N/65536 per band, so this is far above normal


def to_signed(value: int) -> int:
    """An unsigned 64-bit hash as the signed value a BIGINT column holds."""
    return value - (1 << BITS) if value >= (1 << (BITS - 1)) else value


def to_unsigned(value: int) -> int:
    return value & ((1 << BITS) - 1)


def bands(value: int) -> tuple[int, int, int, int]:
    """The four 16-bit bands (0..65535), high to low, of a (signed or unsigned) 64-bit hash."""
    v = to_unsigned(value)
    return tuple((v >> shift) & 0xFFFF for shift in (48, 32, 16, 0))  # type: ignore[return-value]


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes (signed or unsigned)."""
    return (to_unsigned(a) ^ to_unsigned(b)).bit_count()


def image_phash(image) -> int:
    """pHash of a PIL image as an unsigned 64-bit int (imagehash.phash, hash_size 8)."""
    import imagehash  # numpy/scipy: loaded only where images are hashed (the media work horse, bench)

    return int(str(imagehash.phash(image)), 16)


def set_hash(file: EvidenceFile, value: int | None) -> None:
    """Store a hash (unsigned int) and its bands on the row; None clears them."""
    if value is None:
        file.phash = file.phash_b0 = file.phash_b1 = file.phash_b2 = file.phash_b3 = None
        return
    file.phash = to_signed(value)
    file.phash_b0, file.phash_b1, file.phash_b2, file.phash_b3 = bands(value)


@dataclass(frozen=True)
class Match:
    file: EvidenceFile  # this submission's file
    other: EvidenceFile  # the earlier file, in another submission
    distance: int  # 0 for a byte-identical repeat


def _band_condition(value: int):
    b0, b1, b2, b3 = bands(value)
    return or_(EvidenceFile.phash_b0 == b0, EvidenceFile.phash_b1 == b1,
               EvidenceFile.phash_b2 == b2, EvidenceFile.phash_b3 == b3)


def near_matches(file: EvidenceFile, max_distance: int, limit: int = 10) -> list[Match]:
    """Earlier images of other submissions (any uploader) within `max_distance` bits, nearest
    first, at most `limit`. Byte-identical files are left to exact_repeats."""
    if file.phash is None:
        return []
    rows = db.session.scalars(
        select(EvidenceFile).where(_band_condition(file.phash), EvidenceFile.id < file.id,
                                   EvidenceFile.submission_id != file.submission_id,
                                   EvidenceFile.deleted_at.is_(None), EvidenceFile.sha256 != file.sha256)
        .order_by(EvidenceFile.id.desc()).limit(CANDIDATES_MAX)).all()
    found = [Match(file, other, hamming(file.phash, other.phash)) for other in rows if other.phash is not None]
    return sorted((m for m in found if m.distance <= max_distance), key=lambda m: (m.distance, m.other.id))[:limit]


def exact_repeats(file: EvidenceFile, limit: int = 10) -> list[Match]:
    """Earlier files of other submissions with the same SHA-256 (served by ix_evidence_files_sha256)."""
    rows = db.session.scalars(
        select(EvidenceFile).where(EvidenceFile.sha256 == file.sha256, EvidenceFile.id < file.id,
                                   EvidenceFile.submission_id != file.submission_id)
        .order_by(EvidenceFile.id).limit(limit)).all()
    return [Match(file, other, 0) for other in rows]


def submissions_with_matches(submission_ids: Iterable[int], max_distance: int) -> set[int]:
    """Which of these submissions (a queue page) have a file repeating or resembling an earlier
    one. One query for the page's files, one for exact repeats, one band query per hashed file."""
    ids = list(submission_ids)
    if not ids:
        return set()
    earlier = aliased(EvidenceFile)
    repeat = exists(select(earlier.id).where(earlier.sha256 == EvidenceFile.sha256, earlier.id < EvidenceFile.id,
                                             earlier.submission_id != EvidenceFile.submission_id))
    flagged = set(db.session.scalars(select(EvidenceFile.submission_id).distinct().where(
        EvidenceFile.submission_id.in_(ids), EvidenceFile.deleted_at.is_(None), repeat)))
    files = db.session.scalars(select(EvidenceFile).where(EvidenceFile.submission_id.in_(ids),
                                                          EvidenceFile.deleted_at.is_(None),
                                                          EvidenceFile.phash.is_not(None))).all()
    for f in files:
        if f.submission_id not in flagged and f.phash is not None and near_matches(f, max_distance, limit=1):
            flagged.add(f.submission_id)
    return flagged
