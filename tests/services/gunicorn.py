"""The web as deployed: gunicorn with deploy/gunicorn.conf.py serving `app:main_app()` on a free
port of 127.0.0.1, in its own process group so a test can stop all of it."""
from __future__ import annotations

import http.client
import os
from contextlib import contextmanager
import signal
import subprocess
import time

from tests.conftest import base_env
from tests.services.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUNICORN = os.path.join(ROOT, ".venv", "bin", "gunicorn")


def start(tmp_path, **extra: str) -> tuple[subprocess.Popen, int]:
    """(the gunicorn master, its port), with the test settings (tests.conftest.base_env) plus
    `extra`; its output (stdout and stderr together, text) is on proc.stdout."""
    port = free_port()
    env = {**os.environ, **base_env(str(tmp_path / "storage")), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
           **extra}
    proc = subprocess.Popen([GUNICORN, "--config", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                             "app:main_app()"], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the whole group and wait up to 30 s (a graceful stop); SIGKILL and raise past it."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def wait_until_up(proc: subprocess.Popen, port: int, path: str = "/healthz", workers: int = 1) -> None:
    """Until GET `path` answers 200 (or 503: /readyz while a service is down), then
    about half a second per other worker while they finish booting. AssertionError with gunicorn's
    output if it exits, or after 60 s."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited: {proc.stdout.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path, headers={"Connection": "close"})
            if conn.getresponse().status in (200, 503):
                break
        except OSError:
            time.sleep(0.2)
    else:
        raise AssertionError("gunicorn did not answer within 60 s")
    time.sleep(0.5 * (workers - 1))


@contextmanager
def running(tmp_path, **extra: str):
    """start() with `extra`, wait_until_up(), yield (proc, port); stop() whatever happens."""
    proc, port = start(tmp_path, **extra)
    try:
        wait_until_up(proc, port)
        yield proc, port
    finally:
        stop(proc)
