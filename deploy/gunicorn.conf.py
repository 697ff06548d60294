"""gunicorn settings for the web process. Uploads stream to spooled temp files, so sync workers
with a few threads are enough; WEB_CLIENT_TIMEOUT bounds a client that stops sending or reading
(core/platform/gunicorn_worker.py)."""
import multiprocessing
import os
import sys
import tempfile

from core.platform.gunicorn_worker import client_timeout, keepalive_requests

workers = int(os.environ.get("WEB_CONCURRENCY", max(2, multiprocessing.cpu_count())))
threads = int(os.environ.get("WEB_THREADS", 4))
# gthread, with connections shared out by load between the processes (see that module).
worker_class = "core.platform.gunicorn_worker.BalancedThreadWorker"
try:  # a bad value stops gunicorn here with one line naming the variable, before any worker forks
    keepalive_requests()
    client_timeout()  # a client silent this long is dropped
except ValueError as exc:  # SettingsError; SystemExit passes gunicorn's config loader, no traceback
    sys.exit(f"error: bad setting: {exc}")
timeout = 120
graceful_timeout = 30
keepalive = 5
accesslog = None  # the app writes one JSON line per request
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Request metrics (core/monitoring/http_metrics.py) are counted per worker process; with
# PROMETHEUS_MULTIPROC_DIR every worker writes its values there and /metrics adds them all up,
# whichever worker answers. The directory must be empty when gunicorn starts (stale files would
# count twice), so it is emptied here, before any worker exists; without one set, a private
# directory is made for this run.
_made_here = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="points-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def on_starting(server):
    os.makedirs(_metrics_dir, exist_ok=True)
    for name in os.listdir(_metrics_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(_metrics_dir, name))


def post_fork(server, worker):
    # Large request buffers stay on the heap instead of being mapped and unmapped per read
    # (core/platform/heap.py; about 10-15% of the web's CPU per upload).
    from core.platform.heap import keep_large_buffers

    keep_large_buffers()


def child_exit(server, worker):
    # A dead worker's counters stay (they are totals); its live gauges would not, so mark it.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(server):
    if _made_here:  # a directory someone else named is theirs to keep
        import shutil

        shutil.rmtree(_metrics_dir, ignore_errors=True)
