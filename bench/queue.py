"""Queue-page benchmark: 1,000,000 submissions and 3,000,000 ledger rows in a temporary PostgreSQL
database (created here, dropped at the end), then, per portal filter combination, the server-side
time of GET /review (p50, p95) and EXPLAIN ANALYZE of every statement the page runs.

    .venv/bin/python bench/queue.py [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]
                                    [--submissions 1000000] [--ledger 3000000] [--runs 40] [--keep]
                                    [--db NAME] [--only TEXT] [--no-explain]

--db NAME seeds a database of that name once and keeps it; a later run with the same name (and
sizes) reuses the seed, so a paired A/B comparison of two trees skips the 2-minute seeding. Drop it
with `DROP DATABASE NAME` when done. Each row also shows the CPU time of this process per request
(the page's Python and the test client; PostgreSQL's own time is not in it), which moves far less
than wall time on a shared machine.

Goal: p95 <= 50 ms and no sequential scan of submissions or points_ledger. Exit status 1 if missed.
The schema comes from the models (db.create_all), which carry the same indexes as the migrations.
"""
from __future__ import annotations

import os
import sys

# This file is named queue.py: drop its own folder from the path, or it shadows the stdlib `queue`.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.dirname(HERE))

import argparse  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import psycopg  # noqa: E402
from sqlalchemy import event  # noqa: E402

from app import create_app  # noqa: E402
from core.accounts.users import create_user  # noqa: E402
from core.points.catalogue import seed_catalogue  # noqa: E402
from core.platform.db import db  # noqa: E402
from bench.common import figure  # noqa: E402

USERS = 10_000
REVIEWERS = 20
PASSWORD = "bench-password-1"
LARGE = ("submissions", "points_ledger")

# Status mix of a programme that has run a while: most work is decided.
SEED_SQL = """
INSERT INTO users (email, name, role, password_hash, city, active, created_at, updated_at)
SELECT 'uploader' || i || '@example.com', 'Uploader ' || lpad(i::text, 5, '0'), 'uploader', '',
       (ARRAY['London','Leeds','Bristol','Derby'])[1 + i % 4], true, now(), now()
FROM generate_series(1, {users}) AS i;

INSERT INTO submissions (user_id, activity_code, status, session_date, session_start, city, counters, note, revision,
                         claimed_by_id, claim_expires_at, decided_by_id, decided_at, created_at, updated_at)
SELECT u, a, st,
       date '2023-01-01' + (i % 730),
       timestamptz '2023-01-01 09:00+00' + (i % 730) * interval '1 day' + (i % 9) * interval '1 hour',
       (ARRAY['London','Leeds','Bristol','Derby'])[1 + u % 4],
       CASE WHEN a = 'AMPLIFY' THEN '{{"peers": 3, "students": 20}}'::json ELSE '{{}}'::json END, '', 1,
       CASE WHEN st = 'in_review' AND i % 50 = 0 THEN r END,
       CASE WHEN st = 'in_review' AND i % 50 = 0 THEN now() + interval '20 minutes' END,
       CASE WHEN st IN ('approved','rejected','changes_requested','revoked') THEN r END,
       CASE WHEN st IN ('approved','rejected','changes_requested','revoked') THEN ts + interval '2 days' END,
       ts, ts
FROM (
  SELECT i,
         {uploader0} + (i::bigint * 7919) % {users} AS u,
         (ARRAY['EXPLORE','PRESENT','AMPLIFY'])[1 + i % 3] AS a,
         CASE WHEN i % 100 < 70 THEN 'approved' WHEN i % 100 < 82 THEN 'rejected' WHEN i % 100 < 92 THEN 'in_review'
              WHEN i % 100 < 96 THEN 'changes_requested' WHEN i % 100 < 98 THEN 'scanning' ELSE 'revoked' END AS st,
         {reviewer0} + (i % {reviewers}) AS r,
         timestamptz '2023-01-01 00:00+00' + i * interval '60 seconds' AS ts
  FROM generate_series(1, {submissions}) AS i
) AS g;

INSERT INTO points_ledger (user_id, activity_code, delta_points, code, external_source, external_event_id, event_time,
                           session_date, counters, meta, created_at)
SELECT {uploader0} + (i::bigint * 104729) % {users}, (ARRAY['LEARN','EXPLORE','PRESENT','AMPLIFY'])[1 + i % 4], 10, 'awarded', 'bench',
       'bench:' || i, timestamptz '2023-01-01 00:00+00' + i * interval '20 seconds', date '2023-01-01' + (i % 730),
       '{{}}'::json, '{{}}'::json, timestamptz '2023-01-01 00:00+00' + i * interval '20 seconds'
FROM generate_series(1, {ledger}) AS i;
"""

# Each filter combination the queue form offers, as the query string a reviewer's browser sends.
COMBINATIONS = [
    ("default: in review, oldest first", ""),
    ("newest first", "sort=newest"),
    ("session date, earliest first", "sort=session_date"),
    ("session date, latest first", "sort=-session_date"),
    ("approved, oldest first", "status=approved"),
    ("approved, newest first", "status=approved&sort=newest"),
    ("approved, session date", "status=approved&sort=session_date"),
    ("rejected", "status=rejected"),
    ("activity", "activity=AMPLIFY"),
    ("approved + activity", "status=approved&activity=PRESENT"),
    ("uploader by name", "uploader=Uploader%2004242"),
    ("uploader by e-mail", "uploader=uploader77%40example.com"),
    ("uploader, broad match (every user)", "uploader=example.com"),
    ("uploader, a thousand people", "uploader=Uploader%2005"),
    ("uploader, a third of people", "uploader=5"),
    ("session-date range (2 weeks)", "date_from=2024-03-01&date_to=2024-03-14"),
    ("date range, sorted by session date", "date_from=2024-03-01&date_to=2024-03-14&sort=session_date"),
    ("approved + date range", "status=approved&date_from=2024-03-01&date_to=2024-03-14"),
    ("claimed by me", "mine=y"),
    ("reviewed by me (approved)", "status=approved&reviewed=y"),
    ("reviewed by me (rejected, newest)", "status=rejected&reviewed=y&sort=newest"),
    ("activity + uploader + dates", "activity=EXPLORE&uploader=Uploader%20042&date_from=2023-01-01&date_to=2024-12-31"),
    ("everything at once", "status=approved&activity=AMPLIFY&uploader=Uploader%200&date_from=2023-06-01"
                           "&date_to=2023-12-31&reviewed=y&sort=-session_date"),
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Recorder:
    """Captures the SQL a request runs, so each statement can be EXPLAINed afterwards."""

    def __init__(self, engine):
        self.statements: list[tuple[str, object]] = []
        self.on = False
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        if self.on and statement.lstrip().upper().startswith("SELECT"):
            self.statements.append((statement, parameters))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--submissions", type=int, default=1_000_000)
    parser.add_argument("--ledger", type=int, default=3_000_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="keep the database (prints its name)")
    parser.add_argument("--db", help="seed this database once and keep it; reuse it when it is already seeded")
    parser.add_argument("--only", action="append", default=[],
                        help="run only combinations whose label contains this text (repeatable)")
    parser.add_argument("--no-explain", action="store_true", help="skip the EXPLAIN ANALYZE of each page")
    args = parser.parse_args()

    name = args.db or f"points_bench_{os.getpid()}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    args.reuse = bool(args.db and exists)
    url = re.sub(r"/[^/]*$", f"/{name}", args.admin_url).replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        return run(url, args)
    finally:
        if not args.keep and not args.db:
            with psycopg.connect(args.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"kept database {name}")


def run(url: str, args) -> int:
    storage = tempfile.mkdtemp(prefix="points-bench-")
    app = create_app({"APP_ENV": "testing", "SECRET_KEY": "bench-" + "x" * 40, "DATABASE_URL": url,
                      "LOCAL_STORAGE_ROOT": storage, "LOG_LEVEL": "ERROR", "QUEUE_PREFIX": "bench:",
                      "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")})
    app.config["WTF_CSRF_ENABLED"] = False
    with app.app_context():
        if not (args.reuse and seeded()):
            seed(args)
        recorder = Recorder(db.engine)
    run_pages(app, recorder, args)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    shutil.rmtree(storage, ignore_errors=True)  # the app's (empty) storage root
    return 0 if not FAILURES else 1


FAILURES: list[str] = []


def seeded() -> bool:
    """Whether the database already holds a finished seed (the ledger is filled last)."""
    if not db.inspect(db.engine).has_table("points_ledger"):
        return False
    return db.session.execute(db.text("SELECT EXISTS (SELECT 1 FROM points_ledger)")).scalar()


def seed(args) -> None:
    """Users, reviewers, submissions and ledger rows (SEED_SQL), then VACUUM ANALYZE; in the app context."""
    db.drop_all()  # what a seed interrupted earlier left
    db.create_all()
    seed_catalogue()
    reviewers = [create_user(f"reviewer{i}@example.com", "reviewer", PASSWORD)[0].id for i in range(REVIEWERS)]
    db.session.commit()
    started = time.perf_counter()
    raw = db.engine.raw_connection()  # plain psycopg: the seed SQL has no parameters
    try:
        cur = raw.cursor()
        # Seeding millions of rows is one long statement each: not what DB_STATEMENT_TIMEOUT_MS
        # bounds. The page timings below run with the app's limit.
        cur.execute("SET statement_timeout = 0")
        cur.execute(SEED_SQL.format(users=USERS, reviewers=REVIEWERS, reviewer0=reviewers[0],
                                    uploader0=reviewers[-1] + 1, submissions=args.submissions, ledger=args.ledger))
        raw.commit()
        # What autovacuum does on a live database: statistics, and the visibility map that
        # lets the count queries read the index alone.
        raw.driver_connection.autocommit = True
        cur.execute("VACUUM ANALYZE")
        counts = {}
        for table in LARGE:
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
    finally:
        cur.execute("RESET statement_timeout")
        raw.close()
    print(f"seeded {counts['submissions']:,} submissions and {counts['points_ledger']:,} ledger rows "
          f"in {time.perf_counter() - started:.1f} s")


def run_pages(app, recorder: Recorder, args) -> None:
    """Times every combination (wall and this process's CPU), EXPLAINs it, prints the summary and
    the FIGURE lines; misses go to FAILURES."""
    client = app.test_client()
    assert client.post("/login", data={"email": "reviewer0@example.com", "password": PASSWORD}).status_code == 302
    uploader = app.test_client()
    with app.app_context():
        from core.accounts.users import set_password
        from core.platform.models import User

        set_password(db.session.query(User).filter_by(email="uploader1@example.com").one(), PASSWORD)
        db.session.commit()
    assert uploader.post("/login", data={"email": "uploader1@example.com", "password": PASSWORD}).status_code == 302

    pages = [(label, client, "/review?" + qs) for label, qs in COMBINATIONS]
    first = client.get("/review").get_data(as_text=True)
    cursor = re.search(r'href="[^"]*after=([^"&]+)', first).group(1)
    pages.append(("default, page 2 (keyset cursor)", client, f"/review?after={cursor}"))
    pages.append(("uploader: My submissions (points total from the ledger)", uploader, "/submissions"))

    if args.only:
        pages = [p for p in pages if any(o.lower() in p[0].lower() for o in args.only)]
    failures, rows = FAILURES, []
    for label, who, path in pages:
        for _ in range(3):  # warm the caches, as a running server's would be
            assert who.get(path).status_code == 200, path
        timings, cpu = [], []
        for _ in range(args.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            response = who.get(path)
            cpu.append((time.process_time() - c0) * 1000)
            timings.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200
        p50, p95 = statistics.median(timings), percentile(timings, 95)
        plans = ""
        if not args.no_explain:
            recorder.statements.clear()
            recorder.on = True
            who.get(path)
            recorder.on = False
            plans = explain(app, recorder.statements)
        seq = [t for t in LARGE if re.search(rf"Seq Scan on {t}\b", plans)]
        rows.append((label, p50, p95, seq, statistics.median(cpu)))
        if p95 > 50 or seq:
            failures.append(label)
        print(f"\n=== {label}: GET {path}\n    p50 {p50:.1f} ms, p95 {p95:.1f} ms, CPU p50 {rows[-1][4]:.1f} ms "
              f"over {args.runs} requests{'; SEQ SCAN on ' + ', '.join(seq) if seq else ''}")
        print(plans)

    print(f"\n=== summary (server-side time of the page, Flask test client, no network; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    print(f"{'combination':<58} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms':>7}  seq scan")
    for label, p50, p95, seq, c in rows:
        print(f"{label:<58} {p50:8.1f} {p95:8.1f} {c:7.1f}  {', '.join(seq) or '-'}")
    print("goal: p95 <= 50 ms, no sequential scan of submissions or points_ledger: "
          + ("MET" if not failures else f"MISSED for {len(failures)}: {', '.join(failures)}")
          + ("" if not args.no_explain else " (plans not checked: --no-explain)"))
    scale = f"{args.submissions / 1e6:g}M submissions, {args.ledger / 1e6:g}M ledger rows"
    for title, chosen in (("review queue", [r for r in rows if not r[0].startswith("uploader:")]),
                          ("uploader's totals page", [r for r in rows if r[0].startswith("uploader:")])):
        if not chosen:
            continue
        worst = max(chosen, key=lambda r: r[2])
        seqs = sorted({t for r in chosen for t in r[3]})
        figure("4 ten times the data", f"{title} at {scale}, {len(chosen)} combination(s)",
               f"worst p95 {worst[2]:.1f} ms ({worst[0]}); seq scans: {', '.join(seqs) or 'none'}",
               "bound p95 50 ms, no seq scan", worst[2] <= 50 and not seqs)


def explain(app, statements) -> str:
    out = []
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            for statement, params in statements:
                if re.search(r"FROM users\s+WHERE users\.id = %\(pk_1\)s", statement):
                    continue  # Flask-Login's primary-key lookup of the signed-in user
                cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params)
                plan = "\n".join("    " + r[0] for r in cur.fetchall())
                out.append("  -- " + re.sub(r"\s+", " ", statement)[:300] + "\n" + plan)
        finally:
            raw.close()
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
