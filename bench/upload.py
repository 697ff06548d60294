"""Upload-to-clean throughput through the running app, against a baseline in the same run.

The app path: gunicorn (deploy/gunicorn.conf.py, two workers as it runs on 2 cores) on loopback, the portal's upload
form (sign-in and CSRF as a browser does), PostgreSQL, local storage, `flask worker` and a real
clamd (started with tests/services/clamd.py's helpers) on its unix socket, where the app hands it
each stored file by descriptor (FILDES). The baseline sends the same bytes, from memory, straight
through clamd INSTREAM (on its TCP port, the cheaper of the two for INSTREAM) and storage.put. Two measures per file size:

- one at a time: each file's clock runs from the first byte of its POST until its row says
  `clean`, and the next file waits for that (app and baseline runs alternate);
- back to back: one client POSTs a batch of files without waiting for scans, as an uploader with
  several submissions does, until the last is clean; the baseline does the same files one after
  another. CPU per file is counted per batch, per process group, and only this run's own
  processes: its gunicorn and `flask worker` trees, its clamd, its PostgreSQL backends and its
  own Redis server (started here), since the shared ones and other benchmarks' also serve other
  people's work. After a warm-up of both sides, --cpu-rounds rounds of an app batch and a
  baseline batch, in alternating order (bench/upload_cpu.py); the verdict is the ratio of the
  two sides' medians, printed with every round's figures.

Then 16 uploaders at once for 30 s (1 MiB files): each sends a file, waits until it is clean and
sends the next; every file's time from its POST's first byte to `clean` (p50/p95), and any error.

Also prints the web process's peak RSS (VmHWM) per file size, and the issue's goals with their
verdicts (FIGURE lines, collected by bench.report).

    .venv/bin/python -m bench.upload [--small-runs 8] [--large-runs 5] [--stream 16]
                                     [--cpu-rounds 5] [--uploaders 16] [--seconds 30]
"""
from __future__ import annotations

import os
import sys

# bench/ holds queue.py, which would shadow the standard library's queue module.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import io
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import figure, percentile, verdict, wait_http  # noqa: E402
from bench.cpu import Meter  # noqa: E402
from bench.upload_client import PASSWORD, AppUnderTest, csrf  # noqa: E402,F401 - bench.request_cpu imports these from here
from bench.upload_cpu import compare, print_table  # noqa: E402
from core.evidence.scanning import ClamdScanner  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.storage.local import LocalStorage  # noqa: E402
from tests.services.clamd import ClamdServer, _binary, build_database  # noqa: E402
from tests.services.ports import free_port  # noqa: E402

MB = 1024 * 1024
DB_NAME = f"points_bench_upload_{os.getpid()}"  # two runs at once must not share (or drop) one
# The goals (issue 18): CPU per file against the baseline's, and 16 uploaders at once.
CPU_BOUND = {1: 4.0, 25: 1.5}
CONCURRENT_P95_S = 0.250


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


def drop_database() -> None:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def start_redis(work: Path) -> tuple[subprocess.Popen, str]:
    """A Redis server of this run's own, so its CPU is this run's alone."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from redis import Redis
    deadline = time.monotonic() + 10
    while True:
        try:
            Redis(port=port).ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except Exception:
            if time.monotonic() > deadline:
                raise SystemExit("error: redis-server did not start")
            time.sleep(0.05)


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


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(t) for t in text)
    return out


def connections_per_worker(pids: list[int], port: int) -> list[int]:
    """Established client connections each web worker (`pids`) holds on `port`, most first. A
    keep-alive connection stays with the worker that accepted it for the whole run, so an uneven
    split (5 and 11 of 16) leaves one worker's uploaders waiting on one core while the other's has
    room: it sets the 16-uploader tail more than anything else that varies between runs
    (docs/performance.md, "Seventh session")."""
    import psutil

    counts = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        counts.append(sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port))
    return sorted(counts, reverse=True)


def split_summary(splits: list[tuple[int, ...]]) -> str:
    """The most seen split of connections between the web workers and how often it was seen,
    e.g. "8 / 8 in 14 of 15 looks (9 / 7 in 1)"."""
    if not splits:
        return "unknown"
    seen = Counter(splits).most_common()
    text = f"{' / '.join(map(str, seen[0][0]))} in {seen[0][1]} of {len(splits)} looks"
    others = ", ".join(f"{' / '.join(map(str, split))} in {n}" for split, n in seen[1:3])
    return f"{text} ({others})" if others else text


def wait_worker_ready(redis_url: str, timeout: float = 120) -> None:
    from redis import Redis
    from rq import Worker

    redis, deadline = Redis.from_url(redis_url), time.monotonic() + timeout
    while not Worker.all(connection=redis):
        if time.monotonic() > deadline:
            raise SystemExit("error: the worker did not start")
        time.sleep(0.1)
    time.sleep(1.0)  # its scheduler process starts just after


def process_tree(pid: int) -> set[int]:
    """`pid` and its descendants now (a worker's forked work horses; their CPU once they have
    exited shows in their parent's children times)."""
    import psutil

    try:
        return {pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))}
    except psutil.NoSuchProcess:
        return {pid}


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def baseline(data: bytes, scanner: ClamdScanner, storage: LocalStorage, n: int) -> float:
    started = time.perf_counter()
    result = scanner.scan(io.BytesIO(data))
    assert result.state == "clean", result
    storage.put(f"evidence/0/BENCH/{n}.csv", io.BytesIO(data), len(data), "text/csv")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-runs", type=int, default=8)
    parser.add_argument("--large-runs", type=int, default=5)
    parser.add_argument("--stream", type=int, default=16, help="files sent back to back per size and round (1 MiB; a fifth at 25 MiB)")
    parser.add_argument("--cpu-rounds", type=int, default=5, help="interleaved app/baseline rounds of CPU counting per size")
    parser.add_argument("--uploaders", type=int, default=16, help="uploaders at once (1 MiB files); 0 skips that phase")
    parser.add_argument("--seconds", type=float, default=30, help="how long the uploaders keep sending")
    # deploy/gunicorn.conf.py's default on 2 cores; the peak RSS is the largest worker's.
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--web-threads", type=int, default=4, help="threads per worker process (deploy's default: 4)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    procs: list[subprocess.Popen] = []
    clamd = None
    try:
        clamd = start_clamd(work / "clamd")
        redis_proc, redis_url = start_redis(work)
        procs.append(redis_proc)
        port = free_port()
        env = {**os.environ, "APP_ENV": "development", "SECRET_KEY": "bench-secret-key-0123456789abcdef0123",
               "DATABASE_URL": recreate_database(), "REDIS_URL": redis_url,
               "QUEUE_PREFIX": f"bench{os.getpid()}:", "STORAGE_BACKEND": "local",
               "LOCAL_STORAGE_ROOT": str(work / "storage"), "AV_SCANNER": "clamd", "CLAMD_URL": clamd.unix_url,
               "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": str(args.web_workers), "WEB_THREADS": str(args.web_threads), "FLASK_APP": "app:main_app"}
        prepare_app(env)
        venv = ROOT / ".venv" / "bin"
        log = open(work / "procs.log", "wb")
        web = subprocess.Popen([str(venv / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
                                "-b", f"127.0.0.1:{port}", "app:main_app()"], cwd=ROOT, env=env, stdout=log, stderr=log)
        procs.append(web)
        worker = subprocess.Popen([str(venv / "flask"), "worker", "--queues", "scans,media"], cwd=ROOT, env=env,
                                  stdout=log, stderr=log)
        procs.append(worker)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        client = AppUnderTest(base, env["DATABASE_URL"])
        web_pids = children(web.pid)

        # INSTREAM over TCP: the same bytes cost its client about 2.5x more CPU over the unix socket
        # (96 against 38 ms at 25 MiB), which would flatter the app's ratio.
        scanner = ClamdScanner(clamd.url, timeout=60)
        storage = LocalStorage(Settings.from_env({"LOCAL_STORAGE_ROOT": str(work / "baseline")}))
        storage.ensure_ready()
        client.upload_until_clean(csv_bytes(64 * 1024), "warmup.csv")  # first request imports, connects
        # The worker's start-up (imports, media preload, the PDF renderer: about 1 s of CPU) must
        # not fall into a measured phase. A CSV no longer needs the worker, so the warm-up alone
        # does not wait for it: wait until it has registered, which it does once started.
        wait_worker_ready(redis_url)
        # The poller's backend measures, it does not work. Every group is this run's own processes
        # only: the groups are found by name (bench.cpu.group), and another benchmark's gunicorn,
        # `flask worker` or clamd on the same machine would otherwise count as this run's.
        meter = Meter(exclude={client.poller_pid}, only={
            "postgresql": client.backends, "redis": lambda: {redis_proc.pid},
            "web": lambda: process_tree(web.pid), "workers": lambda: process_tree(worker.pid),
            "clamd": lambda: {clamd.process.pid}})
        print(f"{'size':>7} {'runs':>4} {'app MB/s':>9} {'baseline MB/s':>14} {'ratio':>6} {'web VmHWM MB':>13} "
              f"{'clean p50 ms':>13} {'max ms':>7}")
        ratios, peaks, cpu, one_at_a_time = {}, {}, {}, {}
        for size, runs in ((MB, args.small_runs), (25 * MB, args.large_runs)):
            data, mb = csv_bytes(size), size // MB
            app_s, base_s = [], []
            for i in range(runs):  # interleaved, so both see the same disk and neighbours
                app_s.append(client.upload_until_clean(data, f"bench-{i}.csv"))
                base_s.append(baseline(data, scanner, storage, i))
            count = max(1, args.stream if size == MB else args.stream // 5)
            sent = iter(range(10**6))

            def app_batch(n: int, data=data):
                bodies = [client.prepared(data, f"stream-{next(sent)}.csv") for _ in range(n)]
                return lambda: client.back_to_back(bodies)

            def baseline_batch(n: int, data=data):
                keys = [10**6 + next(sent) for _ in range(n)]  # new files, as the app's are
                return lambda: [baseline(data, scanner, storage, k) for k in keys]

            cpu[mb] = compare(meter, app_batch, baseline_batch, count, args.cpu_rounds)
            one_at_a_time[mb] = sorted(app_s)
            ratios[mb] = sum(base_s) / sum(app_s)  # same bytes both sides, so a ratio of times
            peaks[mb] = max(vm_hwm_mb(pid) for pid in web_pids)
            print(f"{mb:>5}MB {runs:>4} {size * runs / MB / sum(app_s):>9.1f} {size * runs / MB / sum(base_s):>14.1f} "
                  f"{ratios[mb]:>6.2f} {peaks[mb]:>13.1f} {statistics.median(app_s) * 1000:>13.0f} "
                  f"{max(app_s) * 1000:>7.0f}")
        print("ratio = app throughput / baseline (clamd INSTREAM + storage.put of the same bytes), one file at a time; "
              "VmHWM is the gunicorn worker's peak RSS "
              "so far; clean = from the POST's first byte to `clean`")
        print_table(cpu)
        for mb, c in cpu.items():
            app_t, base_t, ratios_ = c.app.totals(), c.baseline.totals(), c.round_ratios()
            figure("1 upload efficiency", f"CPU per {mb} MiB upload, everything included (back to back, "
                   f"median of {len(app_t)} rounds of {c.count}, app {min(app_t):.1f}-{max(app_t):.1f} ms)",
                   f"{c.app.median():.1f} ms = {c.ratio():.2f}x (rounds {min(ratios_):.2f}-{max(ratios_):.2f}x)",
                   f"{c.baseline.median():.1f} ms ({min(base_t):.1f}-{max(base_t):.1f}); bound {CPU_BOUND[mb]}x",
                   c.ratio() <= CPU_BOUND[mb])
        figure("1 upload efficiency", "web peak RSS, 25 MiB against 1 MiB", f"{peaks[25]:.1f} MB",
               f"{peaks[1]:.1f} MB; bound +10%", peaks[25] <= peaks[1] * 1.1)
        for mb, times in one_at_a_time.items():
            figure("2 uploads at once", f"{mb} MiB one at a time: POST first byte -> clean",
                   f"p50 {statistics.median(times) * 1000:.0f} ms, p95 {percentile(times, 0.95) * 1000:.0f} ms",
                   f"throughput {ratios[mb]:.2f} of clamd+put", None)
        if args.uploaders:
            print(f"\n{args.uploaders} uploaders at once for {args.seconds:.0f} s, 1 MiB files, each waiting for "
                  f"`clean` before its next")
            splits: list[tuple[int, ...]] = []
            done = threading.Event()

            def sample_splits() -> None:
                # Every 2 s once the uploaders have connected: a connection reopened after
                # WEB_KEEPALIVE_REQUESTS may land anywhere, so one look mid-run is not the run's.
                while not done.wait(2.0):
                    splits.append(tuple(connections_per_worker(web_pids, port)))

            sampler = threading.Thread(target=sample_splits, daemon=True)
            sampler.start()
            started = time.perf_counter()
            latencies, errors = client.concurrent(csv_bytes(MB), args.uploaders, args.seconds)
            done.set()
            sampler.join()
            shares = split_summary(splits)
            span = time.perf_counter() - started
            latencies.sort()
            p50, p95 = statistics.median(latencies) if latencies else float("nan"), percentile(latencies, 0.95)
            print(f"files clean {len(latencies)} ({len(latencies) / span:.1f}/s), errors {len(errors)}"
                  f"{' ' + str(sorted(set(errors))[:5]) if errors else ''}; POST first byte -> clean p50 "
                  f"{p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000 if latencies else 0:.0f} ms; "
                  f"connections per web worker {shares}")
            figure("2 uploads at once", f"1 MiB, {args.uploaders} uploaders for {args.seconds:.0f} s: "
                   "POST first byte -> clean",
                   f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, {len(latencies)} files "
                   f"({len(latencies) / span:.1f}/s), {len(errors)} errors; connections per worker {shares}",
                   f"one at a time p95 {percentile(one_at_a_time[1], 0.95) * 1000:.0f} ms; bound p95 "
                   f"{CONCURRENT_P95_S * 1000:.0f} ms, no error",
                   bool(latencies) and not errors and p95 <= CONCURRENT_P95_S)
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
            print(f"kept {work} and database {DB_NAME}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            drop_database()


if __name__ == "__main__":
    main()
