"""Where one upload's CPU goes inside the app: the POST (Flask test client, no network) and the
scan job (called in this process, against a real clamd), each profiled with pyinstrument.

Prints the two profiles (or writes HTML with --html DIR) and each side's mean wall time per
file. Used to choose what to cut (docs/performance.md, "Upload to clean").

    .venv/bin/python -m bench.profile_upload [--size-kib 1024] [--files 40]
"""
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import shutil
import tempfile
import time
from pathlib import Path

import psycopg
from pyinstrument import Profiler
from pyinstrument.stack_sampler import get_stack_sampler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.upload import PASSWORD, csrf, csv_bytes, start_clamd  # noqa: E402
from core.platform.settings import Settings  # noqa: E402

DB_NAME = "points_bench_profile"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-kib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--html", help="write post.html and scan.html into this folder instead of printing")
    parser.add_argument("--wall", action="store_true", help="sample wall time (default: this thread's CPU time, "
                        "so waits on PostgreSQL, Redis and clamd drop out on a busy machine)")
    args = parser.parse_args()
    if not args.wall:
        get_stack_sampler().timer_func = time.thread_time

    work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    clamd = None
    try:
        clamd = start_clamd(work / "clamd")
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        env = {"APP_ENV": "development", "SECRET_KEY": "bench-secret-key-0123456789abcdef0123",
               "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB_NAME}",
               "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
               "QUEUE_PREFIX": f"profile{os.getpid()}:", "STORAGE_BACKEND": "local",
               "LOCAL_STORAGE_ROOT": str(work / "storage"), "AV_SCANNER": "clamd", "CLAMD_URL": clamd.unix_url,
               "LOG_LEVEL": "WARNING",
               # Off by default, so the POST and the scan are profiled apart (with it on, the POST
               # profile includes the scan); INLINE_SCAN_MAX_MB=2 profiles the request as it runs.
               "INLINE_SCAN_MAX_MB": os.environ.get("INLINE_SCAN_MAX_MB", "0")}
        from flask_migrate import upgrade

        from app import create_app
        from core.accounts.users import create_user
        from core.evidence.scan_pipeline import scan_file
        from core.platform.db import db
        from core.points.catalogue import seed_catalogue

        app = create_app(Settings.from_env(env))
        with app.app_context():
            upgrade()
            seed_catalogue()
            create_user("bench@example.com", "uploader", PASSWORD)
            db.session.commit()
        client = app.test_client()
        client.post("/login", data={"email": "bench@example.com", "password": PASSWORD,
                                    "csrf_token": csrf(client.get("/login").text)})
        token = csrf(client.get("/submissions/new").text)
        data = csv_bytes(args.size_kib * 1024)

        def post(i: int) -> None:
            import io
            r = client.post("/submissions/new", data={
                "csrf_token": token, "activity_code": "EXPLORE", "session_date": time.strftime("%Y-%m-%d"),
                "files": (io.BytesIO(data), f"p-{i}.csv", "text/csv")}, content_type="multipart/form-data")
            if r.status_code != 302:
                raise SystemExit(f"error: upload answered {r.status_code}")

        post(-1)  # warm-up: imports, pools, templates
        post_profile, post_s = Profiler(interval=0.0005), 0.0
        post_profile.start()
        started = time.perf_counter()
        for i in range(args.files):
            post(i)
        post_s = time.perf_counter() - started
        post_profile.stop()

        with app.app_context():
            from sqlalchemy import text
            ids = [i for (i,) in db.session.execute(text("SELECT id FROM evidence_files WHERE scan_state='pending' "
                                                         "ORDER BY id"))]
            db.session.rollback()
            if ids:
                scan_file(ids.pop(0))  # warm-up
            scan_profile = Profiler(interval=0.0005)
            scan_profile.start()
            started = time.perf_counter()
            for file_id in ids:
                scan_file(file_id)
            scan_s = time.perf_counter() - started
            scan_profile.stop()
        n = args.files
        print(f"POST: {post_s * 1000 / n:.1f} ms per file (wall, in process); "
              f"scan job: {scan_s * 1000 / max(1, len(ids)):.1f} ms per file; profiles sample "
              f"{'wall' if args.wall else 'CPU'} time")
        if args.html:
            os.makedirs(args.html, exist_ok=True)
            Path(args.html, "post.html").write_text(post_profile.output_html())
            Path(args.html, "scan.html").write_text(scan_profile.output_html())
            print(f"wrote {args.html}/post.html and scan.html")
        else:
            print(post_profile.output_text(unicode=False, color=False, show_all=bool(os.environ.get("PROFILE_ALL"))))
            print(scan_profile.output_text(unicode=False, color=False, show_all=bool(os.environ.get("PROFILE_ALL"))))
    finally:
        if clamd is not None:
            clamd.stop()
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
