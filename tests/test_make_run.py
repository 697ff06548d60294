"""`make run`'s script starts web, worker and scheduler; the portal and /readyz answer; Ctrl-C
stops everything it started."""
import os
import signal
import subprocess
import time

import requests

from tests.services.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_run_serves_login_and_readyz_then_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/run.db", "LOCAL_STORAGE_ROOT": str(tmp_path / "storage"),
           "REDIS_URL": "redis://127.0.0.1:6379/14", "WEB_CONCURRENCY": "1", "QUEUE_PREFIX": "make-run-test:"}
    proc = subprocess.Popen(["bash", "scripts/run-local", str(port)], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    lines = []
    try:
        for line in proc.stdout:  # the banner comes once the web process answers
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
        login = requests.get(f"{base}/login", timeout=5)
        assert login.status_code == 200 and "Sign in" in login.text
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            left = subprocess.run(["ps", "-o", "pid,ppid,etimes,cmd", "-s", str(proc.pid)], capture_output=True,
                                  text=True).stdout
            os.killpg(proc.pid, signal.SIGKILL)  # leave nothing behind for the rest of the run
            raise AssertionError(f"still running 30 s after Ctrl-C (holding the output open):\n{left}") from None
        output = "".join(lines) + rest
    assert "admin@example.com" in output and f"http://127.0.0.1:{port}/login" in output
    assert "stopped" in output
    # Nothing of the session is left: web, worker, scheduler and their children all exit.
    # Probed with kill(-pgid, 0), not `pgrep -s`: a PID namespace with another /proc would make
    # pgrep find nothing whatever is left.
    deadline = time.time() + 15
    while time.time() < deadline and _group_alive(proc.pid):
        time.sleep(0.5)
    assert not _group_alive(proc.pid), "a process of `make run` outlived Ctrl-C"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
