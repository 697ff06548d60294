"""Where one Kajabi hook's CPU goes inside the web app: N hooks posted through the WSGI app in this
process (Flask test client, no network, no gunicorn), profiled with pyinstrument on this thread's
CPU time, on a migrated throwaway database and Redis db 14 (bench.ingest's).

Prints the profile and the mean wall and CPU time per hook (ms); with --drain, then the same for
the drain (jobs.kajabi.process_event, called in this process) taking the hooks' backlog in
batches of up to 100. Used to choose what to cut (docs/performance.md, issue 18 goal 3).

    .venv/bin/python -m bench.profile_hook [--hooks 2000] [--drain] [--wall] [--no-profile]
"""
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from pyinstrument import Profiler  # noqa: E402
from pyinstrument.stack_sampler import get_stack_sampler  # noqa: E402

from bench.common import temp_environment  # noqa: E402
from bench.ingest import SECRET, body, seed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hooks", type=int, default=2000)
    parser.add_argument("--wall", action="store_true", help="sample wall time (default: this thread's CPU time)")
    parser.add_argument("--drain", action="store_true", help="then profile the drain of the backlog")
    parser.add_argument("--no-profile", action="store_true", help="time only (the profiler costs CPU itself)")
    args = parser.parse_args()
    if not args.wall:
        get_stack_sampler().timer_func = time.thread_time

    with tempfile.TemporaryDirectory() as tmp, temp_environment(14, tmp, KAJABI_WEBHOOK_SECRET=SECRET) as (env, _dsn):
        users = max(1, args.hooks // 2)
        seed(env, _dsn, users)
        from app import create_app

        app = create_app(env)
        client = app.test_client()
        url = f"/api/webhooks/kajabi?token={SECRET}"
        bodies = [json.dumps(body(i, users)).encode() for i in range(args.hooks + 20)]
        for raw in bodies[:20]:  # warm-up: imports, the pool, compiled statements
            assert client.post(url, data=raw, content_type="application/json").status_code == 202
        profiler = None if args.no_profile else Profiler(interval=0.0005)
        if profiler:
            profiler.start()
        wall, cpu = time.perf_counter(), time.thread_time()
        for raw in bodies[20:]:
            response = client.post(url, data=raw, content_type="application/json")
            if response.status_code != 202:
                raise SystemExit(f"error: hook answered {response.status_code}: {response.text}")
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        if profiler:
            profiler.stop()
        print(f"hook: {wall * 1000 / args.hooks:.2f} ms wall, {cpu * 1000 / args.hooks:.2f} ms CPU per hook "
              f"(in process, {args.hooks} hooks{', profiled' if profiler else ''})")
        if profiler:
            print(profiler.output_text(unicode=False, color=False, show_all=bool(os.environ.get("PROFILE_ALL"))))
        if args.drain:
            _profile_drain(app, args)
        with app.app_context():
            from core.platform.db import db

            db.engine.dispose()


def _profile_drain(app, args) -> None:
    from jobs import context
    from jobs.kajabi import process_event

    context.bind(app)
    profiler = None if args.no_profile else Profiler(interval=0.0005)
    if profiler:
        profiler.start()
    wall, cpu = time.perf_counter(), time.thread_time()
    counts = process_event(1)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    if profiler:
        profiler.stop()
    n = sum(counts.values())
    # The drain idles IDLE_GRACE_S before it exits; that wait is in the wall time, not the CPU.
    print(f"drain: {counts}; {cpu * 1000 / max(1, n):.2f} ms CPU per event, {wall:.2f} s wall")
    if profiler:
        print(profiler.output_text(unicode=False, color=False, show_all=bool(os.environ.get("PROFILE_ALL"))))

if __name__ == "__main__":
    main()
