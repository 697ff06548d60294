"""gunicorn's gthread worker, with connections shared out by load between the web processes.

gunicorn's own worker accepts every connection it can as soon as its listener is readable, and a
kept-alive connection then stays with that process. Browsers hold their connections open, so one
process could serve 12 of 16 busy clients while the other served 4: its requests queued for its
threads and its one core while the other core had room (docs/performance.md, "Eighth session").
Two changes, each what common HTTP servers do:

- a process whose threads are all busy stays off the listener, so a new connection goes to a
  process that can start on it now; when every process is busy, each takes one connection still
  waiting per ACCEPT_HOLD_S, so none waits in the backlog for long;
- a connection serves at most `WEB_KEEPALIVE_REQUESTS` requests (default 100, Apache httpd's
  MaxKeepAliveRequests; nginx's `keepalive_requests`), after which the response says
  `Connection: close` (RFC 9112 section 9.6) and the client's next request opens a new connection,
  which the process with a free thread takes. A share set by where clients happened to connect
  does not last.

Used by deploy/gunicorn.conf.py (`worker_class`). Relies on gunicorn 27's ThreadWorker
(`enqueue_req`, `finish_request` and `set_accept_enabled` run on the worker's main thread only),
pinned in requirements.txt; tests/test_gunicorn_worker.py runs it in a real gunicorn.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from core.platform import gunicorn_errors
from core.platform.settings import parse_int

KEEPALIVE_REQUESTS_DEFAULT = 100
# How long a busy process leaves a waiting connection to the others before it takes it itself:
# longer holds share better when every process is busy, and delay a new connection more then
# (nginx's accept_mutex_delay plays the same part, at 500 ms).
ACCEPT_HOLD_S = 0.25


CLIENT_TIMEOUT_DEFAULT_S = 60


def client_timeout(environ: dict | None = None) -> int:
    """Seconds a client may go without sending a byte of its request, or taking one of the
    response (`WEB_CLIENT_TIMEOUT`, 1-3600; default 60, nginx's client_header_timeout,
    client_body_timeout and send_timeout). Raises SettingsError (a ValueError) naming the variable
    for anything else; deploy/gunicorn.conf.py calls this as it loads."""
    raw = (environ if environ is not None else os.environ).get("WEB_CLIENT_TIMEOUT", "")
    if not raw.strip():
        return CLIENT_TIMEOUT_DEFAULT_S
    return parse_int("WEB_CLIENT_TIMEOUT", raw, minimum=1, maximum=3600)


class _QuietSlowClients(logging.Filter):
    """gunicorn logs a socket error while serving a request as an ERROR with a traceback; one that
    is only our timeout running out (a client that stopped sending, or stopped taking the
    response) is a WARNING line."""

    def __init__(self, seconds: int):
        super().__init__()
        self.seconds = seconds

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (BlockingIOError, TimeoutError)):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "client sent or took nothing for %ss; connection closed", (self.seconds,)
            record.exc_info = record.exc_text = None
        return True


def keepalive_requests(environ: dict | None = None) -> int:
    """Requests one connection may carry (`WEB_KEEPALIVE_REQUESTS`, 1-100000; default 100). Raises
    SettingsError (a ValueError) naming the variable for anything else; deploy/gunicorn.conf.py
    calls this as it loads, so gunicorn refuses to start with a bad value."""
    raw = (environ if environ is not None else os.environ).get("WEB_KEEPALIVE_REQUESTS", "")
    if not raw.strip():
        return KEEPALIVE_REQUESTS_DEFAULT
    return parse_int("WEB_KEEPALIVE_REQUESTS", raw, minimum=1, maximum=100_000)


class BalancedThreadWorker(ThreadWorker):
    """ThreadWorker that stays off the listener while its threads are all busy (taking only
    connections left waiting, one per ACCEPT_HOLD_S), closes a connection after
    `keepalive_requests()` requests (module docstring), and answers a request it cannot parse
    with the error envelope (core/platform/gunicorn_errors.py) instead of gunicorn's HTML page."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.in_flight = 0  # requests handed to the thread pool and not yet finished
        self.held_since: float | None = None  # when accepting last stopped for busy threads
        self.max_requests_per_connection = keepalive_requests()
        self._answered = threading.local()  # .sock: the socket this thread has answered (see handle_error)
        self.client_timeout = client_timeout()
        # SO_RCVTIMEO / SO_SNDTIMEO: kernel options, which gunicorn's setblocking(True) leaves
        # alone (a Python-level settimeout would be reset by it on every request).
        self._timeval = struct.pack("ll", self.client_timeout, 0)

    def init_process(self):
        self.log.error_log.addFilter(_QuietSlowClients(self.client_timeout))
        super().init_process()

    def busy(self) -> bool:
        return self.in_flight >= self.cfg.threads

    def set_accept_enabled(self, enabled: bool) -> None:
        # gunicorn's loop asks again on every turn while accepting is off (each event wakes it,
        # and it wakes at least once a second). A busy process stays off the listener; once its
        # hold has run out it takes one connection that is still waiting, which no free process
        # took, and holds again. So it never competes with a free process for a new connection,
        # and when every process is busy a connection waits about ACCEPT_HOLD_S (up to the
        # loop's one-second turn) before one takes it, never indefinitely.
        if enabled and self.busy():
            if self.held_since is None:
                self.held_since = time.monotonic()
            if time.monotonic() - self.held_since >= ACCEPT_HOLD_S:
                self._take_one_waiting()
            enabled = False
        super().set_accept_enabled(enabled)

    def _take_one_waiting(self) -> None:
        before = self.nr_conns
        for listener in self.sockets:  # non-blocking since run() first turned accepting on
            self.accept(listener)  # gunicorn's accept: nothing waiting (EAGAIN) is no error
            if self.nr_conns > before:
                self.held_since = time.monotonic()
                return

    def enqueue_req(self, conn) -> None:
        self.in_flight += 1
        super().enqueue_req(conn)
        if self.busy() and self._accepting:
            super().set_accept_enabled(False)
            self.held_since = time.monotonic()

    def finish_request(self, conn, fs) -> None:
        self.in_flight -= 1
        super().finish_request(conn, fs)

    def handle(self, conn):
        self._answered.sock = None  # one request per call (gthread)
        if not getattr(conn, "client_timeout_set", False):
            # A client that stops sending part-way (headers or body), or stops reading the
            # response, would hold this thread for ever: gthread bounds only the wait for a
            # request's first byte. A blocking read or write that waits longer fails instead
            # (core/platform/request_body.py turns a body read's failure into 408).
            try:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self._timeval)
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._timeval)
            except OSError:
                pass  # a socket closed under us fails on its first read as it would have
            conn.client_timeout_set = True
        return super().handle(conn)

    def handle_request(self, req, conn):
        if req.req_number >= self.max_requests_per_connection:
            req.must_close = True  # the response says Connection: close
        keepalive = super().handle_request(req, conn)
        self._answered.sock = conn.sock
        return keepalive

    def handle_error(self, req, client, addr, exc):
        # Called from gunicorn's except block, so log.exception has the traceback. The access log
        # line gunicorn would add is left out: deploy/gunicorn.conf.py turns that log off.
        if getattr(self._answered, "sock", None) is client:
            # The request was answered, and reading the rest of its body (to keep the connection)
            # failed: a malformed chunk after what the app read. A second response on the socket
            # would read as the answer to the client's next request; gunicorn closes it instead.
            self.log.warning("Invalid request body after the response, ip=%s: %s", (addr or ("",))[0], exc)
            return
        if gunicorn_errors.refusal_for(exc).status >= 500:
            self.log.exception("Error handling request %s", getattr(req, "uri", "(no URI read)"))
        else:
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, gunicorn_errors.response_bytes(exc))
        except Exception:  # noqa: BLE001 - the client may be gone; nothing else to tell it
            self.log.debug("Failed to send error message.")
