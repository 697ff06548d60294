"""The PDF renderer kept warm: one `python -m core.evidence.pdf_render --serve` process per worker,
started with the same clean environment as the one-shot renderer, which forks a limited child per
PDF (core.evidence.pdf_render.serve). Starting a fresh interpreter and importing pdfium for every
PDF cost more than rendering its first page (bench/previews.py, docs/performance.md).

The media worker starts it before it forks work horses (jobs/worker.py), so every horse inherits
the pipes; a process that did not gets its own on first use. One request at a time per process
(a lock); a horse killed mid-request leaves an answer behind that the next request skips (ids).
Anything unexpected from the server (it died, it answered nonsense, it hung past the document's
own limit) stops it; the caller then renders with the one-shot process, as before.
"""
from __future__ import annotations

import itertools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Unavailable(Exception):
    """The server could not answer; render the one-shot way."""


class RenderTimeout(Exception):
    """The document ran past its wall-clock limit and its renderer was killed."""


class Answer:
    """What subprocess.run would have said about a one-shot render: returncode (negative: the
    signal that ended it), stdout and stderr as bytes."""

    def __init__(self, returncode: int, stdout: bytes, stderr: bytes):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def clean_env() -> dict[str, str]:
    """No app settings or secrets reach the renderer: a path, the project on PYTHONPATH, a locale."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": PROJECT_ROOT, "LANG": "C.UTF-8"}


class RenderServer:
    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._owner: int | None = None  # the pid that started the server (its parent, which reaps it)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending = b""  # bytes read from the server past the last answer

    def start(self) -> None:
        """Start the server unless it runs (idempotent). Raises Unavailable if it cannot start."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> subprocess.Popen:
        if os.getpid() != self._owner and (self._proc is not None or self._owner is not None):
            # A forked work horse: the server is its worker's child, not its own. Popen.poll()
            # cannot see it (waitpid fails, and Popen then reports it gone), and a server started
            # here would outlive the horse unreaped (a zombie when the worker is PID 1). So use
            # the worker's while it lives; otherwise render one-shot until the worker restarts it
            # (restart_in_worker, before its next job).
            if self._proc is not None and _alive(self._proc.pid):
                return self._proc
            raise Unavailable("the worker's render server is not running")
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-s", "-m", "core.evidence.pdf_render", "--serve"], env=clean_env(),
                cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError as exc:
            self._proc = None
            raise Unavailable(str(exc)) from exc
        self._owner = os.getpid()
        return self._proc

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if os.getpid() != self._owner:  # the worker's server, seen from a horse: kill it, the worker reaps it
            if _alive(proc.pid):
                os.kill(proc.pid, signal.SIGKILL)
            return
        if proc.poll() is None:
            # Closing its stdin lets it reap its spare child and exit; killed, it would leave the
            # spare to whoever adopts orphans (a zombie under a PID 1 that does not reap).
            try:
                proc.stdin.close()
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()

    def render(self, src: str, out_dir: str, *, max_pages: int, max_px: int, seconds: int, memory_mb: int,
               max_bytes: int, first_page: int = 1) -> Answer:
        """Render `src` into `out_dir` in a limited child of the server. Raises RenderTimeout past
        `seconds` of wall-clock time, Unavailable when the server fails (it is stopped)."""
        with self._lock:
            proc = self._ensure()
            request_id = f"{os.getpid()}-{next(self._ids)}"
            request = {"id": request_id, "src": src, "out": out_dir, "max_pages": max_pages, "max_px": max_px,
                       "first_page": first_page, "seconds": seconds, "memory_mb": memory_mb, "max_bytes": max_bytes}
            try:
                proc.stdin.write((json.dumps(request) + "\n").encode())
                proc.stdin.flush()
                # The server kills the child at `seconds`; allow for one request of a killed horse ahead.
                answer = self._read(proc, request_id, time.monotonic() + 2 * seconds + 10)
            except (OSError, ValueError) as exc:
                self._stop()
                raise Unavailable(str(exc)) from exc
        if answer.get("timeout"):
            raise RenderTimeout()
        return Answer(int(answer["returncode"]), answer.get("stdout", "").encode(), answer.get("stderr", "").encode())

    def _read(self, proc: subprocess.Popen, request_id: str, deadline: float) -> dict:
        fd = proc.stdout.fileno()  # read raw: select() cannot see what a buffered reader holds
        while True:
            while b"\n" not in self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise ValueError("the render server did not answer in time")
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise ValueError("the render server exited")
                self._pending += chunk
            line, _, self._pending = self._pending.partition(b"\n")
            answer = json.loads(line)
            if answer.get("id") == request_id:
                return answer
            # An answer to a request whose horse was killed before reading it: skip it.

def _alive(pid: int) -> bool:
    """Does process `pid` exist (a zombie too: its parent has not reaped it yet)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def restart_in_worker() -> None:
    """In the process that owns the server (a media worker, between jobs): reap it if it died and
    start it again, so the next horse has a warm renderer. Never raises; without a server the
    horses render one-shot."""
    if SERVER._owner is not None and SERVER._owner != os.getpid():
        return
    try:
        SERVER.start()
    except Unavailable:
        pass


SERVER = RenderServer()
