"""Second outside pass, ninth session: core/platform/request_body.py (ClientBody) and the web
worker's WEB_CLIENT_TIMEOUT, attacked with raw bytes against a real gunicorn (deploy/gunicorn.conf.py).
Good clients are not cut (slow but steady uploads, idle keep-alive, 100-continue, slow readers);
client faults end in a 4xx and one WARNING line, and no thread stays stuck. Its one finding,
readline(0) taken for a short body, is fixed (tests/test_request_body.py)."""
from __future__ import annotations

import io
import json
import socket
import time

import pytest

from core.platform.request_body import ClientBody
from tests.services import gunicorn
from tests.test_outside_s9 import HOOK, SECRET, _body, _event, _exchange, _read_all, _recv, _statuses

TIMEOUT_S = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory, migrated_database):
    with gunicorn.running(tmp_path_factory.mktemp("outside2-s9"), WEB_CONCURRENCY="1", WEB_THREADS="4",
                          KAJABI_WEBHOOK_SECRET=SECRET, WEB_CLIENT_TIMEOUT=str(TIMEOUT_S)) as proc_port:
        yield proc_port


@pytest.fixture(scope="module")
def port(server):
    return server[1]


def test_a_slow_but_steady_upload_is_not_cut(port):
    """Body bytes arrive every 1 s (timeout 2 s) for about 6 s in all: the request is served."""
    event = _event("outside2-slow-steady")
    pieces = [event[i:i + len(event) // 6 + 1] for i in range(0, len(event), len(event) // 6 + 1)]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(HOOK + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(event))
        for piece in pieces:
            time.sleep(1)
            sock.sendall(piece)
        data = _read_all(sock)
    assert _statuses(data) == [202], data[:400]


def test_a_slow_but_steady_chunked_upload_is_not_cut(port):
    event = _event("outside2-slow-chunked")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(HOOK + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        for i in range(0, len(event), 40):
            time.sleep(0.8)
            piece = event[i:i + 40]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        data = _read_all(sock)
    assert _statuses(data) == [202], data[:400]


def test_a_keepalive_connection_idle_longer_than_the_client_timeout_still_serves(port):
    """keepalive (5 s) > WEB_CLIENT_TIMEOUT (2 s): idle 3.5 s between requests is allowed."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        time.sleep(TIMEOUT_S + 1.5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        second = _read_all(sock)
    assert _statuses(first) == [200] and _statuses(second) == [200], (first[:200], second[:200])


def test_expect_100_continue_upload(port):
    event = _event("outside2-expect")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(HOOK + b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % len(event))
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        time.sleep(1)
        sock.sendall(event)
        data = _read_all(sock)
    assert _statuses(interim + data)[-1] == 202, data[:400]


def test_content_length_zero_post_to_the_hook_is_a_4xx_envelope(port):
    data = _exchange(port, HOOK + b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    assert _statuses(data) and 400 <= _statuses(data)[0] < 500, data[:400]
    assert "code" in json.loads(_body(data))


def test_pipelined_request_after_a_501_transfer_coding(port):
    data = _exchange(port, HOOK + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
                           b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    st = _statuses(data)
    assert st[0] == 501 and st[1:] in ([], [200]), data[:800]


def test_pipelined_request_after_a_refused_short_chunked_body(port):
    """Chunked body with a bad chunk size then a pipelined GET: 400 then (closed or 200), never a 500."""
    data = _exchange(port, HOOK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
                           b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    st = _statuses(data)
    assert st and st[0] == 400 and 500 not in st, data[:800]


@pytest.mark.parametrize("accept", [b"application/json", b"text/html"])
def test_a_stalled_form_post_is_408_once(port, accept):
    """A login form that stops part-way: 408 after about one timeout (not two: nothing reads the
    body again in the error handler), never a 500."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nAccept: " + accept + b"\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=a%40b.c&pa")
        data = _read_all(sock)
    took = time.monotonic() - start
    assert _statuses(data)[:1] == [408], data[:400]
    assert took < 2 * TIMEOUT_S + 1, took


def test_a_stalled_multipart_upload_is_408(port):
    body = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.csv\"\r\n"
            b"Content-Type: text/csv\r\n\r\na,b\r\n1,2\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /submissions/new HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000\r\n\r\n" + body)
        data = _read_all(sock)
    assert _statuses(data)[:1] in ([408], [401], [302], [303]), data[:400]
    assert 500 not in _statuses(data)


def test_a_slow_reader_of_a_large_response_gets_all_of_it(port):
    """A client reading 16 KiB every 0.5 s (32 KiB/s: slow, but steady) gets the whole
    OpenAPI document."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            time.sleep(0.5)
            chunk = _recv(sock)
            if not chunk:
                break
            data += chunk[:16384] if False else chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
    assert len(body) == length, (len(body), length)


def test_read_past_a_declared_length_returns_empty_not_an_error():
    body = ClientBody(io.BytesIO(b"abcdEXTRA"), 4)
    assert body.read() == b"abcd"
    assert body.read(10) == b""
    assert body.readline() == b""


def test_client_faults_are_warnings_without_tracebacks_and_no_thread_stays_stuck(tmp_path, migrated_database):
    """Own gunicorn (1 thread): a client that stops reading a large pipelined response, a stalled
    body, a short body, a malformed chunk. Afterwards /healthz is answered by the one thread and
    the log has no ERROR / Traceback."""
    proc, port = gunicorn.start(tmp_path, WEB_CONCURRENCY="1", WEB_THREADS="1", KAJABI_WEBHOOK_SECRET=SECRET,
                                WEB_CLIENT_TIMEOUT="1")
    try:
        gunicorn.wait_until_up(proc, port)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
            time.sleep(4)
        _exchange(port, HOOK + b"Content-Length: 50\r\n\r\n{", timeout=10)
        _exchange(port, HOOK + b"Content-Length: 50\r\n\r\n{", half_close=True)
        _exchange(port, HOOK + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nzz\r\n", half_close=True)
        answer = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=10)
        assert _statuses(answer) == [200], answer[:200]
    finally:
        gunicorn.stop(proc)
    log = proc.stdout.read()
    assert "Traceback" not in log and "[ERROR]" not in log and '"level": "ERROR"' not in log, log[-3000:]
