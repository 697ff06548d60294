"""The web as deployed: gunicorn with deploy/gunicorn.conf.py serving `app:main_app()` on a free
port of 127.0.0.1, in its own process group so a test can stop all of it."""
from __future__ import annotations

import os
import signal
import subprocess

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
