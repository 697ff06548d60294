"""core/platform/request_body.py's rules on the bytes alone (no server): a body is read whole or
refused, whatever sizes its reader asks for."""
from __future__ import annotations

import io

import pytest
from hypothesis import given, strategies as st
from werkzeug.exceptions import BadRequest, RequestTimeout

from core.platform.errors import ValidationError
from core.platform.request_body import ClientBody, GuardedInput


class Trickle(io.RawIOBase):
    """A stream that hands out at most `step` bytes per read, as a socket may."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step = data, step

    def readable(self):
        return True

    def read(self, size=-1):
        n = self.step if size is None or size < 0 else min(size, self.step)
        out, self.data = self.data[:n], self.data[n:]
        return out


class Failing:
    def __init__(self, exc: Exception):
        self.exc = exc

    def read(self, size=-1):
        raise self.exc

    readline = read


@given(data=st.binary(max_size=3000), step=st.integers(1, 700), ask=st.integers(1, 1200))
def test_a_whole_body_reads_back_exactly_in_any_read_sizes(data, step, ask):
    body = ClientBody(Trickle(data, step), len(data))
    got = b""
    while chunk := body.read(ask):
        assert len(chunk) == min(ask, len(data) - len(got))  # filled, not short
        got += chunk
    assert got == data


@given(data=st.binary(min_size=1, max_size=2000), missing=st.integers(1, 500), step=st.integers(1, 700))
def test_a_body_shorter_than_declared_is_refused_before_the_reader_sees_its_end(data, missing, step):
    body = ClientBody(Trickle(data, step), len(data) + missing)
    with pytest.raises(BadRequest, match=f"after {len(data)} of the {len(data) + missing} bytes"):
        while body.read(4096):
            pass


def test_read_all_and_readline_refuse_a_short_body_too(caplog):
    """Both readers give the same refusal and the operator's log line (readline once logged nothing)."""
    with pytest.raises(BadRequest, match="after 3 of the 10 bytes"):
        ClientBody(io.BytesIO(b"abc"), 10).read()
    body = ClientBody(io.BytesIO(b"line one\nline"), 20)
    assert body.readline() == b"line one\n"
    assert body.readline() == b"line"
    with pytest.raises(BadRequest, match="after 13 of the 20 bytes"):
        body.readline()
    assert [r.getMessage() for r in caplog.records].count("request body shorter than its Content-Length") == 2


def test_reading_nothing_is_not_the_end_of_the_body():
    """read(0) and readline(0) give b"" and consume nothing, as file objects do (readline(0) was
    taken for a body that ended early; found by the second outside pass)."""
    body = ClientBody(io.BytesIO(b"abc\n"), 4)
    assert body.readline(0) == b"" and body.read(0) == b""
    assert body.readline() == b"abc\n"


def test_a_chunked_body_has_no_declared_length_and_reads_as_sent():
    body = ClientBody(io.BytesIO(b"whatever the server un-chunked"), None)
    assert body.read() == b"whatever the server un-chunked"
    assert body.read(10) == b""


@pytest.mark.parametrize("exc, expected", [
    (BlockingIOError(11, "Resource temporarily unavailable"), RequestTimeout),  # SO_RCVTIMEO ran out
    (TimeoutError("timed out"), RequestTimeout),
    (ConnectionResetError(104, "reset"), BadRequest),
    (ValueError("Invalid chunk size: b'zz'"), BadRequest),  # as gunicorn's parse errors are raised
])
def test_a_failing_read_is_a_client_error_never_a_500(exc, expected):
    with pytest.raises(expected):
        ClientBody(Failing(exc), 10).read(5)
    with pytest.raises(expected):
        ClientBody(Failing(exc), None).readline()


@pytest.mark.parametrize("coding, refused", [("chunked", False), ("CHUNKED", False), ("gzip, chunked", True),
                                             ("br", True), ("chunked, chunked", False), ("", False)])
def test_a_transfer_coding_other_than_chunked_is_refused_on_the_first_read(coding, refused):
    seen = {}

    def app(environ, start_response):
        seen["input"] = environ["wsgi.input"]
        return []

    GuardedInput(app)({"wsgi.input": io.BytesIO(b"{}"), "HTTP_TRANSFER_ENCODING": coding}, None)
    if refused:
        with pytest.raises(ValidationError) as info:
            seen["input"].read()
        assert info.value.status == 501 and info.value.code == "transfer_coding_unsupported"
    else:
        assert seen["input"].read() == b"{}"
