"""Outbox delivery benchmark: seed N pending records, then deliver them with W `jobs.outbox`
loops (each its own process and app) to the real sinks (Redis cache + analytics JSON-lines file)
and print records per second delivered.

    .venv/bin/python bench/outbox.py --records 20000

Goal (issue): >= 2,000 records per second.
"""
from __future__ import annotations

import os
import sys

# This folder holds a script named queue.py that would shadow the standard library.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import psycopg  # noqa: E402

from bench.common import temp_environment, figure, verdict  # noqa: E402


def seed(dsn: str, records: int) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY outbox (topic, idempotency_key, payload, ledger_id, status, attempts, next_attempt_at, "
                      "created_at) FROM STDIN") as copy:
            for i in range(records):
                payload = {"ledger_id": i + 1, "user_id": i % 500 + 1, "activity_code": "AMPLIFY", "delta_points": 3,
                           "code": "awarded", "external_source": "bench", "external_event_id": f"e{i}"}
                copy.write_row(("ledger.recorded", f"ledger:bench:e{i}", json.dumps(payload), i + 1, "pending", 0,
                                "2000-01-01T00:00:00Z", "2000-01-01T00:00:00Z"))


def deliver_loop(env: dict, batch: int) -> None:
    from app import create_app
    from core.delivery import outbox

    app = create_app(env)
    with app.app_context():
        while outbox.deliver_batch(batch).claimed:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--redis-db", type=int, default=15)  # tests claim dbs 2-13; bench.ingest 14, bench.slo 1
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, temp_environment(args.redis_db, tmp) as (env, dsn):
        seed(dsn, args.records)
        spawn = multiprocessing.get_context("spawn")
        started = time.perf_counter()
        procs = [spawn.Process(target=deliver_loop, args=(dict(env), args.batch)) for _ in range(args.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - started  # includes each process's start-up
        with psycopg.connect(dsn) as conn:
            delivered = conn.execute("SELECT count(*) FROM outbox WHERE status = 'delivered'").fetchone()[0]
            span = conn.execute("SELECT extract(epoch FROM max(delivered_at) - min(delivered_at)) FROM outbox").fetchone()[0]
        with open(env["ANALYTICS_FILE"]) as fh:
            lines = sum(1 for _ in fh)
    print(f"records delivered      {delivered} of {args.records} ({lines} analytics lines) by {args.workers} process(es)")
    print(f"throughput             {delivered / elapsed:.0f} records/s wall ({elapsed:.2f} s incl. start-up), "
          f"{delivered / float(span or 1):.0f} records/s between first and last delivery")
    print(f"goal (>=2,000/s): {verdict(delivered / elapsed >= 2000)}")
    figure("(earlier) outbox delivery", f"outbox records delivered, {args.workers} processes",
           f"{delivered / elapsed:.0f} records/s", "bound 2,000/s (an earlier issue's)", delivered / elapsed >= 2000)
    return 0 if delivered == args.records else 1


if __name__ == "__main__":
    sys.exit(main())
