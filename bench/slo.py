"""What a scrape of /metrics and /api/slo costs with a large 28-day Kajabi window.

Seeds N ledgered Kajabi events spread over the last 28 days in a throwaway database, then times,
in process, /metrics and /api/slo as a scraper meets them: the first scrape of a minute computes
the 28-day figure, the others in that minute read it from Redis. The baseline, in the same run,
is the first kind: everything computed.

    .venv/bin/python -m bench.slo [--events 1000000] [--runs 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import psycopg

from bench.common import figure, temp_environment

SPREAD_S = 28 * 86400


def seed(dsn: str, events: int) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO kajabi_events (event_id, event_type, payload, state, received_at, processed_at, ledgered_at) "
            "SELECT 'e' || g, 'tag_added', '{}'::json, 'ledgered', now() - (g %% %s) * interval '1 second', "
            "now() - (g %% %s) * interval '1 second' + interval '0.2 second', "
            "now() - (g %% %s) * interval '1 second' + interval '0.3 second' FROM generate_series(1, %s) g",
            (SPREAD_S, SPREAD_S, SPREAD_S, events))
        conn.execute("ANALYZE kajabi_events")


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, temp_environment(1, tmp, QUEUE_PREFIX="bench-slo:")  # tests claim dbs 2-13 as (env, dsn):
        started = time.time()
        seed(dsn, args.events)
        print(f"seeded {args.events:,} Kajabi events over 28 days in {time.time() - started:.0f} s")

        from app import create_app
        from core.monitoring import metrics, slo
        from core.platform.services import services

        app = create_app(dict(env))
        with app.app_context():
            svc = services()
            key = f"{svc.settings.queue_prefix}slo:kajabi_to_ledger"

            def scrape() -> None:
                metrics.render(svc)

            def summary() -> None:
                slo.summary(svc.redis, svc.settings.unmatched_alert_threshold, key_prefix=svc.settings.queue_prefix)

            rows = []
            for name, fn in (("/metrics", scrape), ("/api/slo", summary)):
                cold, warm = [], []
                for _ in range(args.runs):
                    # The first scrape of a minute: every cached figure (the 28-day one, the burn-rate
                    # windows, /api/slo's 24 h default, the counts) is computed again.
                    svc.redis.delete(*svc.redis.keys(f"{svc.settings.queue_prefix}slo:*") or [key])
                    cold.append(timed(fn))
                    warm.append(timed(fn))  # any other scrape in that minute
                rows.append((name, statistics.median(cold), statistics.median(warm)))
        print(f"{'endpoint':<10} {'computed ms':>12} {'cached ms':>10} {'ratio':>6}")
        for name, cold, warm in rows:
            print(f"{name:<10} {cold:>12.0f} {warm:>10.1f} {warm / cold:>6.3f}")
        print(f"medians of {args.runs}; 'computed' is the baseline (the 28-day figure computed, as once a minute), "
              "'cached' a scrape within that minute")
        for name, cold, warm in rows:
            figure("4 ten times the data", f"{name} computed at {args.events / 1e6:g}M Kajabi events",
                   f"{cold:.0f} ms", f"cached {warm:.1f} ms; bound 100 ms (at 10M)", cold <= 100)


if __name__ == "__main__":
    main()
