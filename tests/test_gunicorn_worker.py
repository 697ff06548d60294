"""The web's gunicorn worker (core/platform/gunicorn_worker.py) in a real gunicorn started from
deploy/gunicorn.conf.py: a busy process leaves new connections to a free one, a kept-alive
connection is closed after WEB_KEEPALIVE_REQUESTS requests, and a bad value stops gunicorn."""
from __future__ import annotations

import http.client
import socket
import time

import pytest

from core.platform.gunicorn_worker import ACCEPT_HOLD_S, KEEPALIVE_REQUESTS_DEFAULT, keepalive_requests
from tests.services import gunicorn


def _stalled_upload(port: int) -> socket.socket:
    """A POST whose body stops halfway: the thread reading it stays busy until the rest comes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                 b"Content-Length: 40\r\n\r\nemail=someone%40example.com")
    return sock


def test_a_busy_process_leaves_new_connections_to_a_free_one(tmp_path):
    """Two processes of one thread each. While one is stuck reading a slow upload, new connections
    are answered by the other at once. gunicorn's own gthread worker accepted whatever reached it
    first, so about half of them waited behind the stalled upload."""
    proc, port = gunicorn.start(tmp_path, WEB_CONCURRENCY="2", WEB_THREADS="1")
    try:
        gunicorn.wait_until_up(proc, port, workers=2)
        for _ in range(3):
            stalled = _stalled_upload(port)
            time.sleep(0.05)  # accepted, and its thread waiting for the rest of the body
            started = time.monotonic()
            for _ in range(3):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=4)
                conn.request("GET", "/healthz", headers={"Connection": "close"})
                assert conn.getresponse().status == 200  # a timeout here: it queued behind the stall
                conn.close()
            # Within the busy process's hold (ACCEPT_HOLD_S): past it, that process takes
            # connections again, so a stuck thread cannot leave new clients waiting forever.
            assert time.monotonic() - started < ACCEPT_HOLD_S
            stalled.sendall(b"&password=xyz")  # the rest (40 bytes in all): the upload is answered
            assert stalled.recv(64).startswith(b"HTTP/1.1 ")
            stalled.close()
    finally:
        gunicorn.stop(proc)


def test_a_process_busy_past_its_hold_still_leaves_new_connections_to_a_free_one(tmp_path):
    """From the outside pass: the first version's hold ran out 0.25 s after a process went busy, and
    from then on a process stuck on a slow upload competed for every new connection with an idle
    one (9 of 20 waited behind the stall). Past its hold a busy process now takes only connections
    still waiting, which a free process would already have taken."""
    proc, port = gunicorn.start(tmp_path, WEB_CONCURRENCY="2", WEB_THREADS="1")
    try:
        gunicorn.wait_until_up(proc, port, workers=2)
        stalled = _stalled_upload(port)
        time.sleep(1.5)  # busy longer than ACCEPT_HOLD_S (and gunicorn's 1 s idle loop turn)
        waited = 0
        for _ in range(12):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request("GET", "/healthz", headers={"Connection": "close"})
                conn.getresponse().read()
            except OSError:
                waited += 1  # queued behind the stalled upload while the other process was idle
            conn.close()
            time.sleep(0.3)
        stalled.close()
        assert waited == 0, f"{waited} of 12 new connections waited behind a stuck thread with a free process"
    finally:
        gunicorn.stop(proc)


def _waiting_to_be_accepted(port: int) -> int:
    """Connections in the accept queue of the listening socket on 127.0.0.1:`port`: for a socket in
    LISTEN, /proc/net/tcp's rx_queue is that queue's length. Read per network namespace, so it also
    works inside a PID namespace, where gunicorn's pids are not /proc's."""
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
                return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def test_when_every_process_is_busy_a_new_connection_still_gets_in(tmp_path):
    """The hold is bounded: with the only thread of each process stuck, a new connection is still
    accepted (and answered once a thread is free); it is not left in the backlog until one is."""
    proc, port = gunicorn.start(tmp_path, WEB_CONCURRENCY="2", WEB_THREADS="1")
    try:
        gunicorn.wait_until_up(proc, port, workers=2)
        first = _stalled_upload(port)
        time.sleep(0.05)
        second = _stalled_upload(port)  # the other process's thread: now both are busy
        time.sleep(0.3)
        assert _waiting_to_be_accepted(port) == 0  # both taken, one by each process
        late = socket.create_connection(("127.0.0.1", port), timeout=10)
        late.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert ACCEPT_HOLD_S <= 1
        deadline = time.monotonic() + 4  # the hold, and gunicorn's idle loop turn (1 s)
        time.sleep(0.05)
        while _waiting_to_be_accepted(port):
            assert time.monotonic() < deadline, "still in the backlog with every thread busy"
            time.sleep(0.05)
        for stalled in (first, second):
            stalled.sendall(b"&password=xyz")
            assert stalled.recv(64).startswith(b"HTTP/1.1 ")
            stalled.close()
        assert late.recv(64).startswith(b"HTTP/1.1 200")
        late.close()
    finally:
        gunicorn.stop(proc)


def test_a_kept_alive_connection_closes_after_its_requests(tmp_path):
    proc, port = gunicorn.start(tmp_path, WEB_CONCURRENCY="1", WEB_THREADS="2", WEB_KEEPALIVE_REQUESTS="3")
    try:
        gunicorn.wait_until_up(proc, port, workers=1)
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        said = []
        for _ in range(3):  # one connection, one request after another
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            assert response.status == 200
            said.append((response.getheader("Connection") or "").lower())
        assert "close" not in said[:2]
        assert said[2] == "close"  # RFC 9112 section 9.6: the client opens a new one for the next
        assert sock.recv(1) == b""  # and the server has closed this one
        sock.close()
        again = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        again.request("GET", "/healthz")
        assert again.getresponse().status == 200
    finally:
        gunicorn.stop(proc)


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1.5", "100001", "١٢"])
def test_a_bad_keepalive_requests_value_stops_gunicorn_with_its_name(tmp_path, raw):
    proc, _ = gunicorn.start(tmp_path, WEB_CONCURRENCY="1", WEB_KEEPALIVE_REQUESTS=raw)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            gunicorn.stop(proc)
    assert proc.returncode != 0
    assert "WEB_KEEPALIVE_REQUESTS" in out


def test_keepalive_requests_reads_the_variable():
    assert keepalive_requests({}) == KEEPALIVE_REQUESTS_DEFAULT == 100
    assert keepalive_requests({"WEB_KEEPALIVE_REQUESTS": " 25 "}) == 25
    assert keepalive_requests({"WEB_KEEPALIVE_REQUESTS": ""}) == 100
    for bad in ("0", "x", "100001", "1e3", "²", "٥"):
        with pytest.raises(ValueError, match="WEB_KEEPALIVE_REQUESTS"):
            keepalive_requests({"WEB_KEEPALIVE_REQUESTS": bad})
