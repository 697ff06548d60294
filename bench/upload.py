"""Upload-to-clean throughput through the running app, against a baseline in the same run.

The app path: gunicorn (deploy/gunicorn.conf.py, one worker) on loopback, the portal's upload
form (sign-in and CSRF as a browser does), PostgreSQL, local storage, `flask worker` and a real
clamd (started with tests/services/clamd.py's helpers). The baseline sends the same bytes straight
through clamd INSTREAM and storage.put. Two measures per file size:

- one at a time: each file's clock runs from the first byte of its POST until its row says
  `clean`, and the next file waits for that (app and baseline runs alternate);
- back to back: one client POSTs all the files without waiting for scans, as an uploader with
  several submissions does; the clock stops when the last is clean. The baseline does the same
  files one after another. CPU per file is counted over this phase, per process group.

Also prints the web process's peak RSS (VmHWM) per file size.

    .venv/bin/python -m bench.upload [--small-runs 8] [--large-runs 5] [--stream 16]
"""
from __future__ import annotations

import os
import sys

# bench/ holds queue.py, which would shadow the standard library's queue module.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import io
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import verdict, wait_http  # noqa: E402
from bench.cpu import Meter  # noqa: E402
from core.evidence.scanning import ClamdScanner  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.storage.local import LocalStorage  # noqa: E402
from tests.services.clamd import ClamdServer, _binary, build_database  # noqa: E402
from tests.services.ports import free_port  # noqa: E402

MB = 1024 * 1024
PASSWORD = "bench-password-123"
DB_NAME = "points_bench"


def csv_bytes(size: int) -> bytes:
    row = b"2025-01-15,Lisbon,workshop,12,140\n"
    return (b"date,city,kind,peers,students\n" + row * (size // len(row) + 1))[:size]


def start_clamd(work: Path) -> ClamdServer:
    for sub in ("db", "tmp"):
        (work / sub).mkdir(parents=True)
    build_database(_binary("sigtool"), work / "db", work)
    server = ClamdServer(binary=_binary("clamd"), workdir=work, port=free_port())
    server.write_config()
    server.start()
    return server


def recreate_database() -> str:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB_NAME}"


def prepare_app(env: dict) -> None:
    """Migrate, seed the catalogue and one uploader, in this process."""
    from flask_migrate import upgrade

    from app import create_app
    from core.accounts.users import create_user
    from core.points.catalogue import seed_catalogue
    from core.platform.db import db

    app = create_app(Settings.from_env(env))
    with app.app_context():
        upgrade()
        seed_catalogue()
        create_user("bench@example.com", "uploader", PASSWORD)
        db.session.commit()
        db.engine.dispose()


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', html)
    if not match:
        raise SystemExit("error: no CSRF token in the form")
    return match.group(1)


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(t) for t in text)
    return out


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class AppUnderTest:
    def __init__(self, base: str, db_url: str):
        self.base = base
        self.http = requests.Session()
        self.db = psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True)
        page = self.http.get(f"{base}/login", timeout=10).text
        r = self.http.post(f"{base}/login", data={"email": "bench@example.com", "password": PASSWORD,
                                                   "csrf_token": csrf(page)}, allow_redirects=False, timeout=10)
        if r.status_code != 302:
            raise SystemExit(f"error: sign-in failed with {r.status_code}")
        self.token = csrf(self.http.get(f"{base}/submissions/new", timeout=10).text)
        self.poller_pid = self.db.execute("SELECT pg_backend_pid()").fetchone()[0]

    def prepared(self, data: bytes, name: str) -> requests.PreparedRequest:
        # Bodies are encoded before the clock starts, as the baseline's bytes are ready in
        # memory: encoding 25 MiB in `requests` took 13-20 ms of this client's time.
        return self.http.prepare_request(requests.Request("POST", f"{self.base}/submissions/new", data={
            "csrf_token": self.token, "activity_code": "EXPLORE", "session_date": time.strftime("%Y-%m-%d"),
        }, files={"files": (name, data, "text/csv")}))

    def post(self, request: requests.PreparedRequest) -> None:
        r = self.http.send(request, allow_redirects=False, timeout=300)
        if r.status_code != 302:
            raise SystemExit(f"error: upload answered {r.status_code}: {r.text[:300]}")

    def last_id(self) -> int:
        return self.db.execute("SELECT coalesce(max(id), 0) FROM evidence_files").fetchone()[0]

    def wait_clean(self, after_id: int, count: int) -> None:
        while True:
            states = dict(self.db.execute("SELECT scan_state, count(*) FROM evidence_files WHERE id > %s "
                                          "GROUP BY scan_state", (after_id,)).fetchall())
            if set(states) - {"pending", "clean"}:
                raise SystemExit(f"error: files ended {states}")
            if states.get("clean", 0) == count:
                return
            time.sleep(0.001)  # a 10 ms poll added ~5 ms to every run, ~4% of a 1 MiB upload

    def upload_until_clean(self, data: bytes, name: str) -> float:
        before, request = self.last_id(), self.prepared(data, name)
        started = time.perf_counter()
        self.post(request)
        self.wait_clean(before, 1)
        return time.perf_counter() - started

    def back_to_back(self, data: bytes, count: int) -> float:
        before = self.last_id()
        requests_ = [self.prepared(data, f"stream-{i}.csv") for i in range(count)]
        started = time.perf_counter()
        for request in requests_:
            self.post(request)
        self.wait_clean(before, count)
        return time.perf_counter() - started


def baseline(data: bytes, scanner: ClamdScanner, storage: LocalStorage, n: int) -> float:
    started = time.perf_counter()
    result = scanner.scan(io.BytesIO(data))
    assert result.state == "clean", result
    storage.put(f"evidence/0/BENCH/{n}.csv", io.BytesIO(data), len(data), "text/csv")
    return time.perf_counter() - started


def measured(meter: Meter, work) -> tuple[float, dict[str, float]]:
    """Run work(); return its seconds and the CPU seconds each process group used meanwhile
    ("client" is this process, timed apart from the snapshots it takes)."""
    before = meter.snapshot()
    cpu = time.process_time()
    seconds = work()
    cpu = time.process_time() - cpu
    used = Meter.used(before, meter.snapshot())
    used["client"] = cpu
    return seconds, used


CPU_GROUPS = ("web", "workers", "clamd", "postgresql", "redis", "client")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-runs", type=int, default=8)
    parser.add_argument("--large-runs", type=int, default=5)
    parser.add_argument("--stream", type=int, default=16, help="files sent back to back per size (1 MiB; a fifth at 25 MiB)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    procs: list[subprocess.Popen] = []
    clamd = None
    try:
        clamd = start_clamd(work / "clamd")
        port = free_port()
        env = {**os.environ, "APP_ENV": "development", "SECRET_KEY": "bench-secret-key-0123456789abcdef0123",
               "DATABASE_URL": recreate_database(), "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3"),
               "QUEUE_PREFIX": f"bench{os.getpid()}:", "STORAGE_BACKEND": "local",
               "LOCAL_STORAGE_ROOT": str(work / "storage"), "AV_SCANNER": "clamd", "CLAMD_URL": clamd.url,
               "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": "1", "WEB_THREADS": "4", "FLASK_APP": "app:main_app"}
        prepare_app(env)
        venv = ROOT / ".venv" / "bin"
        log = open(work / "procs.log", "wb")
        web = subprocess.Popen([str(venv / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
                                "-b", f"127.0.0.1:{port}", "app:main_app()"], cwd=ROOT, env=env, stdout=log, stderr=log)
        procs.append(web)
        procs.append(subprocess.Popen([str(venv / "flask"), "worker", "--queues", "scans,media"], cwd=ROOT, env=env,
                                      stdout=log, stderr=log))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        client = AppUnderTest(base, env["DATABASE_URL"])
        (web_pid,) = children(web.pid)

        scanner = ClamdScanner(clamd.url, timeout=60)
        storage = LocalStorage(Settings.from_env({"LOCAL_STORAGE_ROOT": str(work / "baseline")}))
        storage.ensure_ready()
        client.upload_until_clean(csv_bytes(64 * 1024), "warmup.csv")  # first request imports, connects
        meter = Meter(exclude={client.poller_pid})  # the poller's backend measures, it does not work
        print(f"{'size':>7} {'runs':>4} {'app MB/s':>9} {'baseline MB/s':>14} {'ratio':>6} {'web VmHWM MB':>13} "
              f"{'clean p50 ms':>13} {'max ms':>7} {'back-to-back ratio':>19}")
        ratios, streams, peaks, cpu = {}, {}, {}, {}
        for size, runs in ((MB, args.small_runs), (25 * MB, args.large_runs)):
            data, mb = csv_bytes(size), size // MB
            app_s, base_s = [], []
            for i in range(runs):  # interleaved, so both see the same disk and neighbours
                app_s.append(client.upload_until_clean(data, f"bench-{i}.csv"))
                base_s.append(baseline(data, scanner, storage, i))
            count = max(1, args.stream if size == MB else args.stream // 5)
            app_t, app_cpu = measured(meter, lambda: client.back_to_back(data, count))
            base_t, base_cpu = measured(meter, lambda: sum(baseline(data, scanner, storage, 1000 + i) for i in range(count)))
            cpu[mb] = (count, app_cpu, base_cpu)
            ratios[mb] = sum(base_s) / sum(app_s)  # same bytes both sides, so a ratio of times
            streams[mb], peaks[mb] = base_t / app_t, vm_hwm_mb(web_pid)
            print(f"{mb:>5}MB {runs:>4} {size * runs / MB / sum(app_s):>9.1f} {size * runs / MB / sum(base_s):>14.1f} "
                  f"{ratios[mb]:>6.2f} {peaks[mb]:>13.1f} {statistics.median(app_s) * 1000:>13.0f} "
                  f"{max(app_s) * 1000:>7.0f} {streams[mb]:>19.2f}")
        print("ratio = app throughput / baseline (clamd INSTREAM + storage.put of the same bytes), one file at a time; "
              "back-to-back: the app sent files without waiting for scans; VmHWM is the gunicorn worker's peak RSS "
              "so far; clean = from the POST's first byte to `clean`")
        print(f"\nCPU ms per file, back to back {'':>3}" + "".join(f"{g:>11}" for g in CPU_GROUPS) + f"{'total':>9}")
        for mb, (count, app_cpu, base_cpu) in cpu.items():
            for side, used in (("app", app_cpu), ("baseline", base_cpu)):
                per = {g: used.get(g, 0.0) * 1000 / count for g in CPU_GROUPS}
                print(f"{mb:>5} MiB x {count:<3} {side:<17}" + "".join(f"{per[g]:>11.1f}" for g in CPU_GROUPS)
                      + f"{sum(per.values()):>9.1f}")
        print("(the kernel counts CPU in 10 ms ticks; PostgreSQL includes its background writers)")
        print("goals                " + "; ".join(f"ratio >= 0.5 at {mb} MiB: {verdict(r >= 0.5)} "
                                                 f"(back to back: {verdict(streams[mb] >= 0.5)})" for mb, r in ratios.items())
              + f"; RSS flat (25 MiB peak within 10% of 1 MiB): {verdict(peaks[25] <= peaks[1] * 1.1)}")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if clamd is not None:
            clamd.stop()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
