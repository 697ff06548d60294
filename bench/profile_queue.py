"""Where the review queue page's CPU goes: GET /review for one filter combination, repeated, in a
pyinstrument profile (Flask test client, no network), against a database seeded by
`bench.queue --db NAME` (the seed is not made here).

Prints the profile (or writes HTML with --html FILE) and the mean CPU and wall time per request,
the profiler's own cost included (several times the page's: compare shares, and time with
bench.queue). Used to choose what to cut (docs/performance.md, "Review queue, the page's Python").

    .venv/bin/python -m bench.profile_queue --db NAME [--combination "everything at once"] [--requests 200]
"""
from __future__ import annotations

import os
import sys

# bench/queue.py shadows the stdlib `queue` when this folder is on the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from pyinstrument import Profiler  # noqa: E402
from pyinstrument.stack_sampler import get_stack_sampler  # noqa: E402

from app import create_app  # noqa: E402
from bench.queue import COMBINATIONS, PASSWORD  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="a database seeded by bench.queue --db NAME")
    parser.add_argument("--combination", default="everything at once", help="a label of bench.queue's COMBINATIONS")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.001, help="sampling interval, s")
    parser.add_argument("--html", help="write the profile as HTML to this file instead of printing it")
    parser.add_argument("--csrf", action="store_true", help="with CSRF on, as in production (bench.queue runs without)")
    parser.add_argument("--wall", action="store_true", help="sample wall time (default: this thread's CPU time)")
    args = parser.parse_args()
    if not args.wall:
        get_stack_sampler().timer_func = time.thread_time
    qs = dict(COMBINATIONS)[args.combination]
    storage = tempfile.mkdtemp(prefix="points-profile-")  # the app's (empty) storage root
    app = create_app({"APP_ENV": "testing", "SECRET_KEY": "bench-" + "x" * 40,
                      "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{args.db}",
                      "LOCAL_STORAGE_ROOT": storage, "LOG_LEVEL": "ERROR",
                      "QUEUE_PREFIX": "bench:",
                      "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")})
    client = app.test_client()
    app.config["WTF_CSRF_ENABLED"] = False  # signing in is not what is profiled
    assert client.post("/login", data={"email": "reviewer0@example.com", "password": PASSWORD}).status_code == 302
    app.config["WTF_CSRF_ENABLED"] = args.csrf
    path = "/review?" + qs
    for _ in range(5):
        assert client.get(path).status_code == 200
    profiler = Profiler(interval=args.interval)
    profiler.start()
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(args.requests):
        client.get(path)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    profiler.stop()
    print(f"GET {path}: CPU {cpu * 1000 / args.requests:.2f} ms, wall {wall * 1000 / args.requests:.2f} ms "
          f"per request over {args.requests}; the profile samples {'wall' if args.wall else 'CPU'} time")
    if args.html:
        Path(args.html).write_text(profiler.output_html())
        print(f"wrote {args.html}")
    else:
        print(profiler.output_text(unicode=False, color=False, show_all=bool(os.environ.get("PROFILE_ALL"))))
    shutil.rmtree(storage, ignore_errors=True)


if __name__ == "__main__":
    main()
