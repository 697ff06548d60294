"""Reused evidence: exact repeats (same SHA-256) and near-duplicate images (perceptual hash).

The hash is imagehash's pHash (64 bits: the signs of the lowest 8x8 DCT frequencies of a 32x32
grey image), which survives resizing, re-compression and recolouring; see docs/near-duplicates.md
for the measured distances and the threshold (NEAR_DUPLICATE_DISTANCE). Stored signed (PostgreSQL
BIGINT) with four 16-bit bands (migration 0007_previews), each indexed with the id and the hash
(0010b_phash): candidates are rows whose band is within one bit flip of ours (a short IN list
per band, probe_radius). PostgreSQL checks the exact Hamming distance on the index entries
(bit_count, 14+), so unrelated images cost an index entry each and no table row; on SQLite the
distance is checked here. No extension is needed on either.

Near-duplicates count only earlier images (lower id, another submission): the later upload is the
one reusing evidence, and the first uploader's submission is not flagged by a copy made of it.
Exact repeats (same bytes) are shown from both sides.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from sqlalchemy import bindparam, cast, exists, func, or_, select, union
from sqlalchemy.dialects.postgresql import BIT
from sqlalchemy.orm import aliased

from core.platform.db import db
from core.platform.models import EvidenceFile

BITS = 64
BAND_BITS = 16
CANDIDATES_MAX = 20_000  # per file, SQLite: ~0.3% of all images share a probed band (docs/near-duplicates.md)


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


PLAIN_STDDEV = 3.0  # grey levels (0-255) across a 32x32 reduction: below it a picture is plain


def too_plain(image) -> bool:
    """A (nearly) single-coloured picture has no perceptual fingerprint: its pHash is the same
    whatever the colour, so every blank page or flat screenshot would "match" every other."""
    from PIL import ImageStat

    small = image.convert("L").resize((32, 32))
    return ImageStat.Stat(small).stddev[0] < PLAIN_STDDEV


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


# 17 probes per band. Radius 2 (137 probes) would guarantee 11 bits, but made the look-up read 2% of
# all unrelated images (docs/near-duplicates.md): 20,000 rows per look-up at a million files.
MAX_PROBE_RADIUS = 1


def probe_radius(max_distance: int) -> int:
    """Bits flipped per band when probing: with radius r, two hashes within 4(r+1)-1 bits always
    agree with some band of the other within r bits (pigeonhole: 4 bands, d bits spread over
    them), so the look-up misses nothing up to that distance. 0 -> d <= 3, 1 -> d <= 7 (the cap);
    past 7 bits a match is found when its flipped bits leave some band within one flip."""
    return min(MAX_PROBE_RADIUS, max(0, -(-(max_distance + 1) // 4) - 1))


def probes(band: int, radius: int) -> list[int]:
    """`band` and every 16-bit value within `radius` bit flips of it."""
    values = {band}
    for _ in range(radius):
        values |= {v ^ (1 << bit) for v in values for bit in range(BAND_BITS)}
    return sorted(values)


def found_by_index(value: int, other: int, max_distance: int) -> bool:
    """Whether the band look-up for `value` reads `other` (bench/near_duplicates.py measures it)."""
    radius = probe_radius(max_distance)
    return any(o in probes(b, radius) for b, o in zip(bands(value), bands(other)))


def _distance(column, value: int):
    """PostgreSQL: bits that differ between `column` (a signed BIGINT hash) and `value`, as
    bit_count of the XOR (PostgreSQL 14+), computed on the index entry (no table row read)."""
    return func.bit_count(cast(column.op("#")(to_signed(value)), BIT(64)))


def _candidates(file: EvidenceFile, max_distance: int, limit: int) -> list[tuple[int, int]]:
    """(id, phash) of earlier images of other submissions that share a probed band with `file`.
    PostgreSQL: only those within `max_distance`, nearest first, at most `limit`. Elsewhere
    (SQLite, no bit_count): every band candidate, newest first, up to CANDIDATES_MAX; the caller
    checks the distance."""
    radius = probe_radius(max_distance)
    postgres = db.session.get_bind().dialect.name == "postgresql"
    columns = (EvidenceFile.phash_b0, EvidenceFile.phash_b1, EvidenceFile.phash_b2, EvidenceFile.phash_b3)
    # One index (band, id, phash) per band, images only (migration 0010b_phash): each part is an
    # index-only range read, filtered by id and by distance on the index entries themselves.
    parts = []
    for column, band in zip(columns, bands(file.phash)):
        part = select(EvidenceFile.id, EvidenceFile.phash).where(
            column.in_(probes(band, radius)), EvidenceFile.id < file.id, EvidenceFile.phash.is_not(None))
        parts.append(part.where(_distance(EvidenceFile.phash, file.phash) <= max_distance) if postgres else part)
    found = union(*parts).subquery()
    if postgres:
        # Nearest first *before* the join: the rows are then read one by one in that order until
        # `limit` pass the filters the index does not hold, instead of one per survivor (an image
        # with 2,000 near-copies read 2,000 rows for 10 shown: 150 ms, bench/near_lookup.py).
        found = select(found.c.id, found.c.phash, _distance(found.c.phash, file.phash).label("distance")) \
            .order_by("distance", found.c.id).subquery()
    query = select(found.c.id, found.c.phash).join(EvidenceFile, EvidenceFile.id == found.c.id).where(
        EvidenceFile.submission_id != file.submission_id, EvidenceFile.deleted_at.is_(None),
        EvidenceFile.sha256 != file.sha256)
    if postgres:
        query = query.order_by(found.c.distance, found.c.id).limit(limit)
    else:
        query = query.order_by(found.c.id.desc()).limit(CANDIDATES_MAX)
    return db.session.execute(query).all()


def near_matches(file: EvidenceFile, max_distance: int, limit: int = 10) -> list[Match]:
    """Earlier images of other submissions (any uploader) within `max_distance` bits, nearest
    first (then oldest), at most `limit`. Byte-identical files are left to exact_repeats. Finds
    every match up to 7 bits apart (probe_radius); see docs/near-duplicates.md past that."""
    if file.phash is None:
        return []
    near = sorted((hamming(file.phash, value), other_id) for other_id, value in _candidates(file, max_distance, limit)
                  if value is not None and hamming(file.phash, value) <= max_distance)[:limit]
    if not near:
        return []
    rows = {f.id: f for f in db.session.scalars(select(EvidenceFile).where(EvidenceFile.id.in_([i for _, i in near])))}
    return [Match(file, rows[i], d) for d, i in near if i in rows]


def exact_repeats(file: EvidenceFile, limit: int = 10) -> list[Match]:
    """Files of other submissions, earlier or later, with the same SHA-256 (served by
    ix_evidence_files_sha256): the same bytes sent twice is worth a look from either side."""
    rows = db.session.scalars(
        select(EvidenceFile).where(EvidenceFile.sha256 == file.sha256,
                                   EvidenceFile.submission_id != file.submission_id)
        .order_by(EvidenceFile.id).limit(limit)).all()
    return [Match(file, other, 0) for other in rows]


def record_match(file: EvidenceFile, max_distance: int) -> None:
    """Note on a freshly hashed file the nearest earlier image, if any (the queue's mark reads it)."""
    found = near_matches(file, max_distance, limit=1)
    file.near_duplicate_of_id = found[0].other.id if found else None


def submissions_with_matches(submission_ids: Iterable[int]) -> set[int]:
    """Which of these submissions (a queue page) have a file repeating another submission's file
    (same SHA-256) or resembling an earlier image (near_duplicate_of_id, set when it was hashed).
    One query for the page."""
    ids = list(submission_ids)
    if not ids:
        return set()
    return set(db.session.scalars(_page_matches(), {"ids": ids}))


@cache
def _page_matches():
    """submissions_with_matches' statement, built once: the alias and the statement took about
    1 ms of the queue page's CPU to build for every page."""
    other = aliased(EvidenceFile)
    repeat = exists(select(other.id).where(other.sha256 == EvidenceFile.sha256,
                                           other.submission_id != EvidenceFile.submission_id))
    # Near-duplicates were looked up once, when the preview job hashed the image (record_match).
    return select(EvidenceFile.submission_id).distinct().where(
        EvidenceFile.submission_id.in_(bindparam("ids", expanding=True)), EvidenceFile.deleted_at.is_(None),
        or_(repeat, EvidenceFile.near_duplicate_of_id.is_not(None)))
