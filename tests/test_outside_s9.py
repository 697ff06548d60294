"""Outside pass, ninth session: a real gunicorn (deploy/gunicorn.conf.py) attacked with raw bytes,
as a hostile or broken HTTP client sends them. The first four tests are its findings, which failed
on 4e887d0 (clients that stall on every thread, a body shorter than its Content-Length, a form cut
short read as a CSRF failure, `gzip, chunked`; fixed by core/platform/request_body.py and the web
worker's WEB_CLIENT_TIMEOUT); the rest held and are kept as guards.

Each test names the exact bytes sent."""
from __future__ import annotations

import json
import re
import socket
import time

import pytest

from tests.services import gunicorn

SECRET = "s" * 32


@pytest.fixture(scope="module")
def server(tmp_path_factory, migrated_database):
    with gunicorn.running(tmp_path_factory.mktemp("outside-s9"), WEB_CONCURRENCY="1", WEB_THREADS="2",
                          KAJABI_WEBHOOK_SECRET=SECRET) as proc_port:
        yield proc_port


@pytest.fixture(scope="module")
def port(server):
    return server[1]


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def _exchange(port: int, raw: bytes, half_close: bool = False, timeout: float = 10) -> bytes:
    """Send `raw` (then, with half_close, shut our sending side as a client that gave up does),
    read until the server closes; the raw bytes that came back (b"" on a read timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    """Read until the server closes (what came so far on a read timeout)."""
    data = b""
    try:
        while chunk := _recv(sock):
            data += chunk
    except socket.timeout:
        pass
    return data


def _statuses(data: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"HTTP/1\.[01] (\d{3}) [A-Za-z]", data)]


def _body(data: bytes) -> bytes:
    return data.partition(b"\r\n\r\n")[2]


def _healthz(port: int, timeout: float = 10) -> bytes:
    return _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=timeout)


CLOSE_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
HOOK = b"POST /api/webhooks/kajabi?token=" + SECRET.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def _event(event_id: str) -> bytes:
    return json.dumps({"event_id": event_id, "created_at": "2026-01-01T00:00:00Z",
                       "contact": {"id": "c-" + event_id, "email": event_id + "@example.com"},
                       "tag": {"id": "t", "name": "elevate-ai-1-completed"}}).encode()


# --- the pass's findings, fixed ----------------------------------------------------------------------


STALLED = {  # part of a request, then nothing
    "partial headers": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",
    "partial body": HOOK + b"Content-Length: 100\r\n\r\n{\"a\":",
    "huge chunk declared": HOOK + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffffffff\r\n{}",  # 2**96 bytes
}


def test_clients_that_stall_on_every_thread_are_dropped_and_the_service_answers(tmp_path, migrated_database):
    """As many connections as the process has threads (here 3), each sending part of a request
    and then nothing, held every thread for ever (found: /healthz unanswered 130 s later, past
    gunicorn's own 120 s `timeout`; gthread bounds only the wait for a request's first byte). Now a
    client silent for WEB_CLIENT_TIMEOUT (here 1 s) is dropped: a stalled body is answered 408
    `request_timeout`, stalled headers are closed, /healthz is answered, and the log holds one
    WARNING line per client, no traceback."""
    proc, port = gunicorn.start(tmp_path, WEB_CONCURRENCY="1", WEB_THREADS=str(len(STALLED)),
                                KAJABI_WEBHOOK_SECRET=SECRET, WEB_CLIENT_TIMEOUT="1")
    held = {}
    try:
        gunicorn.wait_until_up(proc, port)
        for name, partial in STALLED.items():
            held[name] = socket.create_connection(("127.0.0.1", port), timeout=30)
            held[name].sendall(partial)
        time.sleep(0.5)  # every thread is now inside a stalled request
        answer = _healthz(port, timeout=30)
        assert answer.startswith(b"HTTP/1.1 200 "), f"/healthz unanswered with stalled clients: {answer[:80]!r}"
        for name, sock in held.items():
            got = b""
            while chunk := _recv(sock):
                got += chunk
            if STALLED[name].startswith(b"POST"):  # the app was reading the body: it says why
                assert _statuses(got) == [408], (name, got[:300])
                assert json.loads(_body(got))["code"] == "request_timeout"
            else:  # no request yet to answer: the connection is closed
                assert got == b"", name
    finally:
        for sock in held.values():
            sock.close()
        gunicorn.stop(proc)
    log = proc.stdout.read()
    assert "Traceback" not in log and "[ERROR]" not in log, log[-2000:]
    assert "client sent or took nothing for 1s" in log and "client stopped sending" in log, log[-2000:]


@pytest.mark.parametrize("value", ["soon", "0", "3601", "1.5", "60s", "\uff11"])
def test_a_bad_client_timeout_stops_gunicorn_with_one_line_naming_it(tmp_path, value):
    proc, _ = gunicorn.start(tmp_path, WEB_CLIENT_TIMEOUT=value)
    try:
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            gunicorn.stop(proc)
    output = proc.stdout.read()
    assert "Traceback" not in output, output
    assert output.strip().splitlines()[-1].startswith("error: bad setting: WEB_CLIENT_TIMEOUT="), output


def test_a_body_shorter_than_its_content_length_is_refused(port):
    """Found: Content-Length says 667, the client sends a complete-looking 167-byte JSON event and
    hangs up, and the hook answered 202 and stored it. RFC 9112 section 8: fewer octets
    than Content-Length is an incomplete message. gunicorn's length reader returns the short read
    instead of raising; core/platform/request_body.py compares. The same truncation sent chunked
    is a 400 too."""
    event = _event("outside-s9-truncated")
    data = _exchange(port, HOOK + b"Content-Length: %d\r\n\r\n" % (len(event) + 500) + event, half_close=True)
    assert _statuses(data) == [400], data[:400]
    assert json.loads(_body(data))["code"] == "bad_request"


def test_an_unsupported_transfer_coding_before_chunked_is_501(port):
    """Found: `Transfer-Encoding: br` is 501 `transfer_coding_unsupported` ("Send the
    body as is or chunked"), but `gzip, chunked` is accepted: gunicorn un-chunks and hands the
    app the still-gzip-coded bytes as if identity, which the hook reads as plain JSON (here: 400
    invalid_payload, or a 202 for a client that did not actually gzip). RFC 9112 section 6.1: a
    coding the server does not understand SHOULD be 501."""
    data = _exchange(port, HOOK + b"Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert _statuses(data) == [501], data[:400]
    assert json.loads(_body(data))["code"] == "transfer_coding_unsupported"


def test_a_form_cut_short_is_not_reported_as_a_csrf_failure(port):
    """Found: a form POST whose Content-Length body stops early is
    was answered 400 `csrf_failed` ("The form expired or was not sent from this site"), so the CSRF
    counters/logs show an attack that was a dropped upload; a chunked body cut short is 400
    `bad_request`. Same for a multipart upload to /submissions/new cut mid-file."""
    data = _exchange(port, b"POST /login HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
                           b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
                           b"email=a%40b.c&pass", half_close=True)
    assert _statuses(data) == [400], data[:400]
    assert json.loads(_body(data))["code"] == "bad_request"


def test_a_stray_crlf_after_a_body_does_not_break_the_next_pipelined_request(port):
    """RFC 9112 section 2.2: one empty line before a request line is ignored (more than one is a
    400 envelope, which the RFC allows)."""
    assert _statuses(_exchange(port, b"\r\n" + CLOSE_HEALTHZ)) == [200]
    data = _exchange(port, HOOK + b"Content-Length: 2\r\n\r\n{}\r\n" + CLOSE_HEALTHZ)
    assert _statuses(data)[1:] == [200], data[:800]


# --- HELD (kept as guards) -----------------------------------------------------------------------


GOOD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
STATS = b"GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("middle, expected", [
    (STATS, [200, 200, 200]),
    (b"GET /api/nope HTTP/1.1\r\nHost: x\r\n\r\n", [200, 404, 200]),
    (HOOK.replace(SECRET.encode(), b"wrong") + b"Content-Length: 2\r\n\r\n{}", [200, 403, 200]),
    (HOOK.replace(SECRET.encode(), b"wrong") + b"Transfer-Encoding: chunked\r\n\r\n2;ext=\"v\"\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n",
     [200, 403, 200]),
    (b"GET /api/stats HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", [200, 200, 200]),
    (b"HEAD /api/stats HTTP/1.1\r\nHost: x\r\n\r\n", [200, 200, 200]),
], ids=["stats", "404", "hook 403", "chunk ext+trailer", "GET with body", "HEAD"])
def test_pipelined_good_requests_each_get_their_own_answer_in_order(port, middle, expected):
    assert _statuses(_exchange(port, GOOD + middle + CLOSE_HEALTHZ)) == expected


@pytest.mark.parametrize("bad, status", [
    (b"NOT HTTP\r\n\r\n", 400),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /api/stats HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"POST /api/webhooks/kajabi HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400),
    (b"get /api/stats HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /api/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (HOOK + b"Transfer-Encoding: chunked\r\n\r\n2;\x01\r\n{}\r\n0\r\n\r\n", 400),
    (HOOK + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX T: 1\r\n\r\n", 400),
], ids=["garbage", "414", "dup host", "dup length", "lowercase method", "raw 0xff in path", "chunk ext ctl",
        "bad trailer"])
def test_a_bad_request_after_a_good_one_is_answered_once_and_the_connection_closed(port, bad, status):
    data = _exchange(port, GOOD + bad + CLOSE_HEALTHZ)
    assert _statuses(data)[:2] == [200, status], data[:600]
    tail = data[data.index(b"HTTP/1.1 %d " % status):]
    assert b"Content-Type: application/json" in tail and b"<html" not in tail
    assert len(_statuses(data)) == 2  # nothing after the refusal


@pytest.mark.parametrize("target", [b"/api/stats?x=%00", b"/api/stats%ff", b"/api/%00", b"/api/files/%ff",
                                    b"/api/files/1/signed-url?ttl=%ff", b"/review?after=%ff%fe",
                                    b"/api/stats?" + b"%ff" * 1300])
def test_percent_encoded_junk_is_never_a_500(port, target):
    data = _exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
                                              b"Connection: close\r\n\r\n")
    assert _statuses(data) and _statuses(data)[0] < 500, data[:300]


@pytest.mark.parametrize("method", [b"TRACE", b"PROPFIND", b"CONNECT", b"DELETE", b"G!T"])
def test_odd_methods_on_an_api_path_are_a_405_envelope(port, method):
    data = _exchange(port, method + b" /api/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert _statuses(data) == [405], data[:300]
    assert json.loads(_body(data))["code"] == "method_not_allowed"


@pytest.mark.parametrize("raw, status", [
    (HOOK + b"Content-Length: 99999999999999999999999999\r\nConnection: close\r\n\r\n{}", 413),
    (HOOK + b"Content-Length: 65537\r\nConnection: close\r\n\r\n" + b" " * 65537, 413),
    (HOOK + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
     + b"1000\r\n" + b" " * 4096 + b"\r\n" + b"" .join([b"1000\r\n" + b" " * 4096 + b"\r\n"] * 20) + b"0\r\n\r\n", 413),
    (HOOK + b"Content-Length: 20002\r\nConnection: close\r\n\r\n" + b"[" * 10001 + b"]" * 10001, 400),
    (HOOK + b"Content-Length: 5003\r\nConnection: close\r\n\r\n[1" + b"0" * 5000 + b"]", 400),
    (HOOK + b"Content-Length: 16\r\nConnection: close\r\n\r\n" + b'{"event_id":"\xe9"}', 400),
    (HOOK + b"X-Kajabi-Signature: \xff\xfe\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 400),
    (HOOK.replace(b"application/json", b"\xff/\xfe;;=") + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}", 415),
], ids=["absurd length", "64KiB+1", "chunked 84KiB", "deep", "long number", "latin-1", "junk signature",
        "junk content type"])
def test_hostile_hook_bodies_are_4xx_envelopes(port, raw, status):
    data = _exchange(port, raw)
    assert _statuses(data) == [status], data[:400]
    assert set(json.loads(_body(data))) == {"type", "code", "message", "details"}


def test_a_valid_hook_under_the_limit_with_padding_is_accepted(port):
    event = _event("outside-s9-padded")
    body = event + b" " * (65536 - len(event))
    data = _exchange(port, HOOK + b"Content-Length: 65536\r\nConnection: close\r\n\r\n" + body)
    assert _statuses(data) in ([202], [200]), data[:400]


def test_big_cookies_and_junk_headers_are_served(port):
    for raw in (b"GET /api/stats HTTP/1.1\r\nHost: x\r\nCookie: session=" + b"A" * 8000 + b"\r\nConnection: close\r\n\r\n",
                b"GET /login HTTP/1.1\r\nHost: x\r\nCookie: session=\xff\xfe.x..\r\nConnection: close\r\n\r\n",
                b"GET /api/stats HTTP/1.1\r\nHost: \xff\xfe:99999999\r\nAccept: \xff\r\nIf-None-Match: \xff\"\r\n"
                b"If-Modified-Since: 99999999999\r\nRange: bytes=999999999999999999999-\r\nConnection: close\r\n\r\n",
                b"GET /api/stats HTTP/1.0\r\n\r\n"):
        assert _statuses(_exchange(port, raw)) == [200], raw[:80]


def test_keepalive_limit_closes_after_100_pipelined_requests(port):
    data = _exchange(port, GOOD * 150)
    assert _statuses(data) == [200] * 100 and data.count(b"Connection: close") == 1


def test_a_client_gone_mid_chunked_body_is_400_and_the_log_has_no_traceback(server):
    proc, port = server
    data = _exchange(port, HOOK + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % 20 + b"{\"event_id\": \"abcdefg\"}"[:20] + b"\r\n",
                     half_close=True)
    assert _statuses(data) == [400], data[:300]
    assert _healthz(port).startswith(b"HTTP/1.1 200 ")


def test_a_multipart_upload_cut_mid_file_is_bad_request_not_csrf(port):
    """The same kind as the form above, on the upload form: a multipart body that stops
    part-way through its file."""
    boundary = b"b0undary"
    body = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.csv\"\r\n"
            b"Content-Type: text/csv\r\n\r\n" + b"a,b\n1,2\n" * 200)
    data = _exchange(port, b"POST /submissions/new HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
                           b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
                           b"Content-Length: %d\r\n\r\n" % (len(body) + 5000) + body, half_close=True)
    assert _statuses(data) == [400], data[:400]
    assert json.loads(_body(data))["code"] == "bad_request"
