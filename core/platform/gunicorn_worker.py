"""gunicorn's gthread worker, with connections shared out by load between the web processes.

gunicorn's own worker accepts every connection it can as soon as its listener is readable, and a
kept-alive connection then stays with that process. Browsers hold their connections open, so one
process could serve 12 of 16 busy clients while the other served 4: its requests queued for its
threads and its one core while the other core had room (docs/performance.md, "Eighth session").
Two changes, each what common HTTP servers do:

- a process whose threads are all busy stays off the listener, so a new connection goes to a
  process that can start on it now; when every process is busy, the one with the fewest active
  connections listens (core/platform/connection_board.py, nginx's `least_conn`), and any other
  takes a connection it has seen waiting for ACCEPT_HOLD_S, so none waits in the backlog for long
  even if the least loaded is stuck;
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
import select
import socket
import struct
import threading
import time

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from core.platform import gunicorn_errors
from core.platform.connection_board import ConnectionBoard
from core.platform.settings import parse_int

KEEPALIVE_REQUESTS_DEFAULT = 100
# How long a busy process leaves a waiting connection to the others before it takes it itself:
# longer holds share better when every process is busy, and delay a new connection more then
# (nginx's accept_mutex_delay plays the same part, at 500 ms).
ACCEPT_HOLD_S = 0.25
# A kept-alive connection idle this long no longer counts as a client of its process when
# processes are compared (ConnectionBoard): a busy client sends its next request within this.
IDLE_AFTER_S = 1.0
# A process this many active connections above the least loaded closes one after its response.
SHED_EXCESS = 2


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
    """ThreadWorker that stays off the listener while its threads are all busy, unless it has the
    fewest active connections of all the processes (otherwise taking only a connection left waiting
    for ACCEPT_HOLD_S), closes a connection after `keepalive_requests()` requests (module
    docstring), and answers a request it cannot parse with the error envelope (core/platform/gunicorn_errors.py) instead of gunicorn's HTML page."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.in_flight = 0  # requests handed to the thread pool and not yet finished
        self.waiting_since: float | None = None  # when this process, holding back, first saw a connection waiting
        self.max_requests_per_connection = keepalive_requests()
        self._answered = threading.local()  # .sock: the socket this thread has answered (see handle_error)
        self.client_timeout = client_timeout()
        # SO_RCVTIMEO / SO_SNDTIMEO: kernel options, which gunicorn's setblocking(True) leaves
        # alone (a Python-level settimeout would be reset by it on every request).
        self._timeval = struct.pack("ll", self.client_timeout, 0)
        # Set by deploy/gunicorn.conf.py's pre_fork, in the master: the shared counts of active
        # connections and this worker's slot on them (none: shared out by busy threads alone).
        self.board: ConnectionBoard | None = None
        self.board_slot: int | None = None
        self.shedding = None  # the connection closing to even the split (_shed), if one is
        self._shed_lock = threading.Lock()
        self._listener_poll = None  # made on first use, in the worker (_connection_waiting)

    def init_process(self):
        self.log.error_log.addFilter(_QuietSlowClients(self.client_timeout))
        super().init_process()

    def busy(self) -> bool:
        return self.in_flight >= self.cfg.threads

    def should_listen(self) -> bool:
        """A free thread here, or every process busy and this one with the fewest active connections."""
        if not self.busy():
            return True
        return self.board is not None and self.board_slot is not None and self.board.fewest(self.board_slot)

    def active_connections(self) -> int:
        """Open connections, less those idle in keep-alive for over IDLE_AFTER_S (a browser's
        spare, a client that has finished): the clients likely to send this process more work.
        gthread keeps idle connections in order of their timeout (idle since + keepalive)."""
        cutoff = time.monotonic() + self.cfg.keepalive - IDLE_AFTER_S
        idle = 0
        for conn in self.keepalived_conns:
            if conn.timeout > cutoff:
                break
            idle += 1
        return self.nr_conns - idle

    def _publish(self) -> None:
        if self.board is not None and self.board_slot is not None:
            self.board.publish(self.board_slot, self.active_connections(), self.busy())

    def set_accept_enabled(self, enabled: bool) -> None:
        # gunicorn's loop asks again on every turn while accepting is off (each event wakes it,
        # and it wakes at least once a second). A busy process stays off the listener unless it
        # has the fewest active connections (should_listen): a new connection goes to a free process,
        # or, when every process is busy, to the least loaded. A connection this process has
        # seen waiting for ACCEPT_HOLD_S (the listening one is stuck, or there is none) it takes
        # itself, so none waits in the backlog for long (up to the loop's one-second turn).
        self._publish()  # idle connections age without an event
        if enabled and self.should_listen():
            self.waiting_since = None
        elif enabled:
            if not self._connection_waiting():
                self.waiting_since = None
            elif self.waiting_since is None:
                self.waiting_since = time.monotonic()
            elif time.monotonic() - self.waiting_since >= ACCEPT_HOLD_S:
                self.waiting_since = None
                for listener in self.sockets:  # non-blocking since run() first turned accepting on
                    super().accept(listener)  # gunicorn's accept: nothing waiting (EAGAIN) is no error
            enabled = False
        super().set_accept_enabled(enabled)

    def _connection_waiting(self) -> bool:
        # poll(), not select(): select() refuses descriptors above 1023, which a process holding
        # many connections reaches.
        if self._listener_poll is None:
            self._listener_poll = select.poll()
            for listener in self.sockets:
                self._listener_poll.register(listener, select.POLLIN)
        try:
            return any(events & select.POLLIN for _fd, events in self._listener_poll.poll(0))
        except (OSError, ValueError):  # a listener closed while stopping
            return False

    def accept(self, listener) -> None:
        # The poller's callback. Whether this process should listen was decided at its last turn;
        # another may have freed a thread or lost a client since, so ask again: a
        # connection left here stays in the backlog for the process that should take it.
        if not self.should_listen():
            super().set_accept_enabled(False)
            return
        self.waiting_since = None  # what waits now is this process's to take
        super().accept(listener)

    def enqueue_req(self, conn) -> None:
        self.in_flight += 1
        super().enqueue_req(conn)
        self._publish()  # a connection just accepted counts before the check below
        if self._accepting and not self.should_listen():
            super().set_accept_enabled(False)

    def finish_request(self, conn, fs) -> None:
        self.in_flight -= 1
        if conn is self.shedding:
            self.shedding = None
        super().finish_request(conn, fs)
        self._publish()

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
        if req.req_number >= self.max_requests_per_connection or self._shed(conn):
            req.must_close = True  # the response says Connection: close
        keepalive = super().handle_request(req, conn)
        self._answered.sock = conn.sock
        return keepalive

    def _shed(self, conn) -> bool:
        """True for one connection at a time while this process holds SHED_EXCESS or more active
        connections than the least loaded: its client reconnects, and the least loaded takes it
        (should_listen). A split set by a burst of connections (16 uploaders starting at once)
        is even again within a request or two instead of lasting until WEB_KEEPALIVE_REQUESTS."""
        if self.board is None or self.board_slot is None or self.shedding is not None:
            return False
        if self.board.excess(self.board_slot) < SHED_EXCESS:
            return False
        with self._shed_lock:  # handle_request runs on the pool's threads
            if self.shedding is not None:
                return False
            self.shedding = conn
        return True

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
