"""Near-duplicate look-up at a million stored image hashes (issue 18, goal 5): the server-side time
of the statements core.evidence.duplicates.near_matches issues, on PostgreSQL.

    .venv/bin/python -m bench.near_lookup [--images 1000000] [--probes 300]

A throwaway database (bench.common.temp_environment, migrated to head) gets `--images` evidence
files with perceptual hashes, seeded by COPY (hashes made here) and one INSERT ... SELECT:

- most are random 64-bit hashes (unrelated photos; measured pHashes of unrelated photos differ in
  32 bits at the median, docs/near-duplicates.md);
- 2% are small clusters: an original and 4-19 copies each 0-10 bits from it (reused photos);
- 1% are 5 large clusters of 2,000 near-copies each (certificates of one template, a class
  photo everyone uploads): the look-up of such an image reads its whole cluster, the worst case.

Then ANALYZE, and for `--probes` files (a third planted near-duplicates, a third random, a third
from the large clusters) the production call near_matches(file, NEAR_DUPLICATE_DISTANCE) runs
with its statements captured; each statement is run again under EXPLAIN (ANALYZE, BUFFERS) and its
server-side "Execution Time" summed per look-up. Correctness: what near_matches returns is
compared with a brute-force scan of every hash (numpy), within the configured distance. Goal:
p95 <= 25 ms, no sequential scan of evidence_files.
"""
from __future__ import annotations

import argparse
import io
import random
import re
import statistics
import sys
import tempfile
import time

import numpy as np
from sqlalchemy import event, select

from bench.common import figure, percentile, temp_environment

SEED = 18
FILES_PER_SUBMISSION = 4
BOUND_MS = 25.0

INSERT_SQL = """
INSERT INTO users (email, name, role, password_hash, city, active, created_at, updated_at)
VALUES ('uploader@example.com', 'Uploader', 'uploader', '', 'Leeds', true, now(), now());
INSERT INTO submissions (user_id, activity_code, status, session_date, session_start, city, counters, note,
                         revision, created_at, updated_at)
SELECT (SELECT min(id) FROM users), 'EXPLORE', 'approved', date '2024-01-01' + (i % 700),
       timestamptz '2024-01-01 09:00+00', 'Leeds', '{{}}'::json, '', 1, now(), now()
FROM generate_series(1, {submissions}) AS i;
INSERT INTO evidence_files (uuid, submission_id, user_id, activity_code, storage_key, original_name, ext,
                            content_type, size_bytes, sha256, scan_state, scan_attempts, created_at,
                            preview_state, preview_pages, phash, phash_b0, phash_b1, phash_b2, phash_b3)
SELECT md5(h.n::text)::uuid::text, s0 + h.sub, (SELECT min(id) FROM users), 'EXPLORE',
       'evidence/bench/' || h.n || '.jpg', 'photo.jpg', 'jpg', 'image/jpeg', 500000, md5('bytes' || h.n) || md5(h.n::text),
       'clean', 1, timestamptz '2024-01-01 00:00+00' + h.n * interval '1 minute', 'made', 1,
       h.phash, (h.phash >> 48) & 65535, (h.phash >> 32) & 65535, (h.phash >> 16) & 65535, h.phash & 65535
FROM seed_hashes AS h, (SELECT min(id) - 1 AS s0 FROM submissions) AS s
ORDER BY h.n;
"""


def flip(rng: random.Random, value: int, bits: int) -> int:
    for bit in rng.sample(range(64), bits):
        value ^= 1 << bit
    return value


def make_hashes(count: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """(unsigned hashes in insertion order, cluster id per row or -1). Cluster members are spread
    through the sequence, so an original comes before its copies, as uploads do."""
    hashes = [rng.getrandbits(64) for _ in range(count)]
    cluster = [-1] * count
    positions = list(range(count))
    rng.shuffle(positions)
    taken, next_id = 0, 0
    plan = [2000] * 5  # large clusters: 1% of a million
    small_total = count // 50
    while sum(plan[5:]) < small_total:
        plan.append(rng.randint(5, 20))
    for size in plan:
        rows = sorted(positions[taken:taken + size])
        taken += size
        base = rng.getrandbits(64)
        for row in rows:
            hashes[row] = flip(rng, base, rng.randint(0, 10 if size < 2000 else 6))
            cluster[row] = next_id
        next_id += 1
    return hashes, cluster


def signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def catalogue(env: dict) -> None:
    from app import create_app
    from core.platform.db import db
    from core.points.catalogue import seed_catalogue

    with create_app(env).app_context():
        seed_catalogue()
        db.session.commit()
        db.engine.dispose()


def seed(dsn: str, hashes: list[int]) -> float:
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE UNLOGGED TABLE seed_hashes (n bigint, sub bigint, phash bigint)")
        with conn.cursor().copy("COPY seed_hashes (n, sub, phash) FROM STDIN") as copy:
            buf = io.StringIO()
            for n, value in enumerate(hashes, 1):
                buf.write(f"{n}\t{(n - 1) // FILES_PER_SUBMISSION + 1}\t{signed(value)}\n")
            copy.write(buf.getvalue())
        conn.execute("SET statement_timeout = 0")
        # A bulk load builds indexes faster after the rows than row by row: drop the table's
        # secondary indexes and make the same ones again (their definitions as the migrations left them).
        indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'evidence_files' "
                               "AND indexname NOT IN (SELECT conname FROM pg_constraint)").fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute(INSERT_SQL.format(submissions=-(-len(hashes) // FILES_PER_SUBMISSION)))
        conn.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("DROP TABLE seed_hashes")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE evidence_files")
        conn.execute("VACUUM ANALYZE submissions")
    return time.perf_counter() - started


class Recorder:
    """The statements (with parameters) a call sends, as SQLAlchemy's engine sends them."""

    def __init__(self, engine):
        self.statements: list[tuple[str, object]] = []
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append((statement, parameters))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(SEED)
    started = time.perf_counter()
    hashes, cluster = make_hashes(args.images, rng)
    print(f"made {len(hashes):,} hashes in {time.perf_counter() - started:.1f} s")
    # It queues nothing: no Redis db of its own (None), so none is flushed under another run.
    with tempfile.TemporaryDirectory() as tmp, temp_environment(None, tmp, QUEUE_PREFIX="bench-near:") as (env, dsn):
        catalogue(env)
        print(f"seeded {len(hashes):,} evidence files (COPY + INSERT ... SELECT, VACUUM ANALYZE) in {seed(dsn, hashes):.1f} s")
        return measure(env, hashes, cluster, args, rng)


def probe_rows(cluster: list[int], count: int, rng: random.Random) -> list[tuple[str, int]]:
    """(kind, 0-based row) for the probes: later members of small clusters (planted
    near-duplicates with an earlier original), random unrelated rows, and large-cluster rows."""
    small, large, plain = [], [], []
    first: dict[int, int] = {}
    for row, c in enumerate(cluster):
        if c < 0:
            plain.append(row)
        elif c not in first:
            first[c] = row
        elif c < 5:
            large.append(row)
        else:
            small.append(row)
    third = count // 3
    return ([("planted near-duplicate", r) for r in rng.sample(small, third)]
            + [("unrelated image", r) for r in rng.sample(plain, third)]
            + [("large cluster (2,000 copies)", r) for r in rng.sample(large, count - 2 * third)])


def measure(env: dict, hashes: list[int], cluster: list[int], args, rng: random.Random) -> int:
    from app import create_app
    from core.evidence import duplicates
    from core.platform.db import db
    from core.platform.models import EvidenceFile

    app = create_app(env)
    with app.app_context():
        from core.platform.services import services

        distance = services().settings.near_duplicate_distance
        first_id = db.session.scalar(select(EvidenceFile.id).order_by(EvidenceFile.id).limit(1))
        recorder = Recorder(db.engine)
        table = np.array(hashes, dtype=np.uint64)
        per_kind: dict[str, list[float]] = {}
        totals, misses, missed_at_8, expected_total, found_total, seq_scans = [], 0, 0, 0, 0, 0
        worst_plan, worst = "", -1.0
        raw = db.engine.raw_connection()
        cur = raw.cursor()
        for kind, row in probe_rows(cluster, args.probes, rng):
            file = db.session.get(EvidenceFile, first_id + row)
            recorder.statements.clear()
            duplicates.near_matches(file, distance)  # as the review page calls it (nearest 10)
            statements = list(recorder.statements)
            found = duplicates.near_matches(file, distance, limit=len(hashes))  # every match, to check
            db.session.rollback()
            # Brute force: every earlier row within the distance, other submissions only.
            d = np.bitwise_count(table[:row] ^ np.uint64(hashes[row]))
            d[row - row % FILES_PER_SUBMISSION:] = 64
            expected = {first_id + int(i) for i in np.nonzero(d <= distance)[0]}
            got = {m.other.id for m in found}
            expected_total += len(expected)
            found_total += len(got & expected)
            if got - expected:
                raise SystemExit(f"error: near_matches returned rows outside the distance for row {row}")
            lost = expected - got
            if lost:
                far = {first_id + int(i) for i in np.nonzero(d == distance)[0]}
                if lost - far:  # below the configured distance, the index must find everything
                    misses += 1
                else:
                    missed_at_8 += len(lost)
            spent, plans = 0.0, []
            for statement, params in statements:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                plan = "\n".join(r[0] for r in cur.fetchall())
                spent += float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))
                plans.append(plan)
                if re.search(r"Seq Scan on evidence_files\b", plan):
                    seq_scans += 1
            raw.rollback()
            totals.append(spent)
            per_kind.setdefault(kind, []).append(spent)
            if spent > worst:
                worst, worst_plan = spent, "\n\n".join("-- " + re.sub(r"\s+", " ", s)[:200] + "\n" + p
                                                       for (s, _), p in zip(statements, plans))
        cur.execute("SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
                    "WHERE relname = 'evidence_files' AND indexrelname LIKE 'ix_evidence_files_phash%' ORDER BY 1")
        sizes = cur.fetchall()
        raw.close()
    print("band indexes: " + ", ".join(f"{name} {size / 2**20:.0f} MiB" for name, size in sizes))

    totals.sort()
    p50, p95, top = statistics.median(totals), percentile(totals, 0.95), totals[-1]
    print(f"\nnear_matches(file, {distance}) over {len(totals)} probes, server-side (EXPLAIN ANALYZE Execution Time, "
          f"all statements of one look-up summed):")
    for kind, values in per_kind.items():
        values.sort()
        print(f"  {kind:<30} n={len(values):<4} p50 {statistics.median(values):6.2f} ms  "
              f"p95 {percentile(values, 0.95):6.2f} ms  max {values[-1]:6.2f} ms")
    print(f"  {'all':<30} n={len(totals):<4} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  max {top:6.2f} ms")
    print(f"correctness: {found_total:,} of {expected_total:,} earlier images within {distance} bits found; "
          f"look-ups missing one closer than {distance} bits: {misses}; missed at exactly {distance} bits: {missed_at_8}")
    print(f"sequential scans of evidence_files: {seq_scans}")
    print(f"\nslowest look-up ({worst:.2f} ms):\n{worst_plan}")
    ok = p95 <= BOUND_MS and seq_scans == 0 and misses == 0
    figure("5 previews, near-duplicates", f"near-duplicate look-up at {len(hashes) / 1e6:g}M image hashes, server-side "
           f"({len(totals)} probes)", f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {top:.1f} ms; seq scans: {seq_scans}; "
           f"found {found_total}/{expected_total} within {distance} bits", f"bound p95 {BOUND_MS:g} ms, no seq scan", ok)
    return 0


if __name__ == "__main__":
    sys.exit(main())
