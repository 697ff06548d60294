"""CPU of one upload request inside the web process, by part: the app called in process (no
HTTP, no profiler), each request's environ built before its clock starts, CPU read with
time.thread_time around the WSGI call alone. Four cases show what is fixed per request, what grows
with the file, and what the in-request scan adds:

    GET /submissions/new (sign-in, session, CSRF, the form)
    POST 1 KiB and 1 MiB, INLINE_SCAN_MAX_MB=0 (store, rows, commit, queue the scan)
    POST 1 MiB with the in-request scan (docs/performance.md, "Where an upload's CPU goes")

    .venv/bin/python -m bench.request_cpu [--runs 40]
"""
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
from werkzeug.test import EnvironBuilder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.upload import PASSWORD, csrf, csv_bytes, start_clamd  # noqa: E402
from core.platform.settings import Settings  # noqa: E402

DB_NAME = f"points_bench_request_{os.getpid()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-request-"))
    clamd = None
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        clamd = start_clamd(work / "clamd")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        base_env = {"APP_ENV": "development", "SECRET_KEY": "bench-secret-key-0123456789abcdef0123",
                    "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB_NAME}",
                    "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
                    "QUEUE_PREFIX": f"reqcpu{os.getpid()}:", "STORAGE_BACKEND": "local",
                    "LOCAL_STORAGE_ROOT": str(work / "storage"), "AV_SCANNER": "clamd", "CLAMD_URL": clamd.unix_url,
                    "LOG_LEVEL": "WARNING"}
        from flask_migrate import upgrade

        from app import create_app
        from core.accounts.users import create_user
        from core.platform.db import db
        from core.points.catalogue import seed_catalogue

        apps = {n: create_app(Settings.from_env({**base_env, "INLINE_SCAN_MAX_MB": n})) for n in ("0", "2")}
        with apps["0"].app_context():
            upgrade()
            seed_catalogue()
            create_user("bench@example.com", "uploader", PASSWORD)
            db.session.commit()

        results = []
        for label, inline, size in (("GET /submissions/new", "0", None), ("POST 1 KiB, scan queued", "0", 1024),
                                    ("POST 1 MiB, scan queued", "0", 1024 * 1024),
                                    ("POST 1 MiB, scanned in the request", "2", 1024 * 1024)):
            app = apps[inline]
            client = app.test_client()
            signed = client.post("/login", data={"email": "bench@example.com", "password": PASSWORD,
                                                 "csrf_token": csrf(client.get("/login").text)})
            if signed.status_code != 302:
                raise SystemExit(f"error: sign-in answered {signed.status_code}: {signed.text[:300]}")
            token = csrf(client.get("/submissions/new").text)
            data = csv_bytes(size) if size else b""

            def environ():
                if size is None:
                    builder = EnvironBuilder("/submissions/new", method="GET", environ_base=client.environ_base)
                else:
                    builder = EnvironBuilder("/submissions/new", method="POST", environ_base=client.environ_base,
                                             data={"csrf_token": token, "activity_code": "EXPLORE",
                                                   "session_date": time.strftime("%Y-%m-%d"),
                                                   "files": (io.BytesIO(data), "f.csv", "text/csv")})
                env = builder.get_environ()
                builder.close()
                client._add_cookies_to_wsgi(env)  # the signed-in session, as the test client sends it
                return env

            cpu = []
            for i in range(args.runs + 3):
                env = environ()
                status, headers = [], []
                started = time.thread_time()
                body = b"".join(app(env, lambda s, h, e=None: (status.append(s), headers.extend(h))))
                used = time.thread_time() - started
                location = dict(headers).get("Location", "")
                if not status or status[0][:3] not in ("200", "302") or "login" in location:
                    raise SystemExit(f"error: {label} answered {status} {location} {body[:200]!r}")
                if i >= 3:  # warm-up: imports, pools, templates
                    cpu.append(used * 1000)
            results.append((label, statistics.median(cpu), min(cpu)))
        print(f"{'request (web process, in process)':<40} {'CPU median ms':>14} {'min ms':>8}")
        for label, med, low in results:
            print(f"{label:<40} {med:>14.1f} {low:>8.1f}")
        print("CPU of the calling thread only: PostgreSQL, Redis and clamd work is in their own processes")
    finally:
        if clamd is not None:
            clamd.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
