"""Requests gunicorn refuses before the app runs are answered with the error envelope, not
gunicorn's HTML page (core/platform/gunicorn_errors.py): a real gunicorn with deploy's config,
sent raw bytes over a socket, as a hostile or broken client sends them."""
from __future__ import annotations

import json
import socket

import pytest

from tests.services import gunicorn


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    with gunicorn.running(tmp_path_factory.mktemp("gunicorn-errors"), WEB_CONCURRENCY="1", WEB_THREADS="2") as (_, port):
        yield port


def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `raw`, read until the server closes; (status, headers in lower case, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it has read all we send
        data = b""
        while chunk := _recv(sock):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def _envelope(status_headers_body, status: int, code: str, field: str) -> dict:
    got_status, headers, body = status_headers_body
    assert got_status == status, body
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    envelope = json.loads(body)
    assert set(envelope) == {"type", "code", "message", "details"}
    assert envelope["code"] == code and envelope["details"][0]["field"] == field
    assert "<html" not in body.decode()
    return envelope


def test_an_address_too_long_is_414_with_the_envelope(port):
    envelope = _envelope(_exchange(port, b"GET /api/stats?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
                         414, "request_line_too_long", "request_line")
    assert envelope["type"] == "validation_error"


def test_one_header_too_long_is_431_with_the_envelope(port):
    _envelope(_exchange(port, b"GET /api/stats HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"),
              431, "headers_too_large", "headers")


def test_too_many_headers_is_431_with_the_envelope(port):
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    _envelope(_exchange(port, b"GET /api/stats HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"), 431, "headers_too_large",
              "headers")


@pytest.mark.parametrize("raw", [
    b"NOT HTTP AT ALL\r\n\r\n",                                                   # a request line of garbage
    b"GET /api/stats HTTP/9.9\r\nHost: x\r\n\r\n",                                 # an HTTP version that is not
    b"GET /api/stats HTTP/1.1\r\nHost: x\r\nBad<Name>: v\r\n\r\n",                 # a header name with < >
    b"POST /api/webhooks/kajabi HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",  # a negative length
    b"POST /api/webhooks/kajabi HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",                               # both lengths: smuggling
    b"GET /api/stats HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n",            # obsolete line folding
], ids=["garbage line", "http/9.9", "header name", "negative length", "length and chunked", "folding"])
def test_a_request_that_cannot_be_read_is_400_bad_request_with_the_envelope(port, raw):
    envelope = _envelope(_exchange(port, raw), 400, "bad_request", "request")
    assert envelope["details"][0]["issue"]  # what gunicorn found, for whoever reads the response


def test_an_unknown_transfer_coding_is_501_with_the_envelope(port):
    _envelope(_exchange(port, b"POST /api/webhooks/kajabi HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br\r\n"
                              b"\r\n0\r\n\r\n"), 501, "transfer_coding_unsupported", "headers.transfer-encoding")


def test_an_expectation_other_than_100_continue_is_417_with_the_envelope(port):
    _envelope(_exchange(port, b"POST /api/webhooks/kajabi HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 2\r\n"
                              b"\r\n{}"), 417, "expectation_unsupported", "headers.expect")


def test_a_client_quoting_html_in_the_request_gets_it_back_only_as_json_text(port):
    status, headers, body = _exchange(port, b"GET /<script>alert(1)</script> HTTP/1.1\r\nHost: x\r\n"
                                            b"<script>: x\r\n\r\n")
    assert status == 400 and headers["content-type"] == "application/json"
    assert "<script>" in json.loads(body)["details"][0]["issue"]  # quoted, as data, in JSON


def test_the_process_keeps_serving_after_refusals(port):
    for _ in range(3):
        _exchange(port, b"GET /" + b"x" * 6000 + b" HTTP/1.1\r\n\r\n")
    status, _, body = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200, body


BAD_CHUNKS = b"zz\r\nabc\r\n0\r\n\r\n"  # a chunk size that is not hexadecimal


@pytest.mark.parametrize("accept, content_type", [("application/json", "application/json"),
                                                  ("text/html", "text/html; charset=utf-8")])
def test_a_malformed_chunked_body_read_by_the_app_is_400_once_not_500(port, accept, content_type):
    """The app reads the body through gunicorn, which raises on the bad chunk: answered 400 (the
    envelope for a JSON client, the error page for a browser), and only that one response,
    though gunicorn then fails again reading the rest of the body to keep the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nAccept: " + accept.encode() +
                     b"\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + BAD_CHUNKS)
        data = b""
        while chunk := _recv(sock):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), data[:300]
    assert f"content-type: {content_type}".encode() in head.lower()
    assert data.count(b"HTTP/1.1 ") == 1, data  # no second response on the same connection
    if accept == "application/json":
        assert json.loads(body)["code"] == "bad_request"


def test_a_client_that_stops_mid_body_leaves_the_process_serving(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n100\r\nonly a few bytes")
        sock.shutdown(socket.SHUT_WR)
        while _recv(sock):
            pass
    status, _, body = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200, body


def test_a_malformed_body_the_app_never_read_gets_no_second_response(port):
    """Answered without reading the body (401: not signed in), then gunicorn reads the rest of it
    to keep the connection and meets the bad chunk: the socket closes, with no 400 written after
    the 401, which a client would take as the answer to its next request."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /api/files/signed-urls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + BAD_CHUNKS)
        data = b""
        while chunk := _recv(sock):
            data += chunk
    assert data.startswith(b"HTTP/1.1 401 "), data[:300]
    assert data.count(b"HTTP/1.1 ") == 1, data
