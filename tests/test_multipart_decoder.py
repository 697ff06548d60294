"""core/evidence/multipart.py decodes exactly what werkzeug's own decoder decodes.

The upload door parses multipart bodies with a faster copy of werkzeug's decoder (no regex compiled
per boundary, no whole-buffer regex scan, fewer copies). A client must not be able to tell: every
body, however odd (line breaks of any kind, data that looks like a boundary, reads cut anywhere,
bodies cut short), gives the same events, fields, files and errors as werkzeug 3.1's decoder.
No services needed.
"""
from __future__ import annotations

import io
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser
from werkzeug.sansio.multipart import LINE_BREAK, Epilogue, MultipartDecoder, NeedData

from core.evidence.multipart import BoundaryFinder, Decoder, Parser

BOUNDARY = b"----WebKitFormBoundaryX3b9Kq"
# RFC 2046 bchars, less space (werkzeug takes the boundary from the Content-Type as given).
BCHARS = st.text("0123456789abcdefABCDEF'()+_,-./:=?", min_size=1, max_size=70).map(str.encode)


def werkzeug_patterns(boundary: bytes) -> tuple[re.Pattern, re.Pattern]:
    """The two patterns werkzeug 3.1 compiles in MultipartDecoder.__init__."""
    decoder = MultipartDecoder(boundary)
    return decoder.preamble_re, decoder.boundary_re


def as_tuple(match) -> tuple | None:
    return None if match is None else (match.start(), match.end(), bytes(match.group(1)))


def noisy_data(boundary: bytes) -> st.SearchStrategy[bytes]:
    """Bytes rich in what a boundary search trips over: line breaks, dashes, horizontal space and
    pieces of the boundary itself."""
    pieces = st.sampled_from([b"\r\n", b"\n", b"\r", b"-", b"--", b" ", b"\t", b"\x0b", b"\x0c", b"a,b\n",
                              b"--" + boundary, b"--" + boundary[:-1], b"--" + boundary + b"x",
                              b"--" + boundary + b"--", boundary])
    return st.lists(st.one_of(pieces, st.binary(max_size=12)), max_size=30).map(b"".join)


@st.composite
def search_cases(draw):
    boundary = draw(BCHARS)
    data = draw(noisy_data(boundary))
    pos = draw(st.integers(0, max(0, len(data))))
    return boundary, data, pos


@given(search_cases())
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@example((BOUNDARY, b"a\r\n--" + BOUNDARY + b"  \r\nx", 0))
@example((BOUNDARY, b"\n\r--" + BOUNDARY + b"--", 0))
@example((BOUNDARY, b"\r\n--" + BOUNDARY + b"\r", 1))
@example((b"--", b"\n------\n", 0))
@example((b"a", b"\n--ax" * 20 + b"\r\n--a  \r\n", 3))
def test_the_finder_matches_what_werkzeugs_patterns_match(case):
    boundary, data, pos = case
    preamble_re, boundary_re = werkzeug_patterns(boundary)
    for pattern, finder in ((preamble_re, BoundaryFinder(boundary, prefix_required=False)),
                            (boundary_re, BoundaryFinder(boundary, prefix_required=True))):
        assert as_tuple(finder.search(bytearray(data), pos)) == as_tuple(pattern.search(bytearray(data), pos))


def events(decoder_cls, body: bytes, boundary: bytes, reads: list[int], limit: int | None = None) -> list:
    """Every event the decoder gives, feeding `body` in reads of the given sizes (cycled); or the
    exception it raised, by type."""
    decoder = decoder_cls(boundary, max_form_memory_size=limit, max_parts=20)
    out, at, i = [], 0, 0
    try:
        while True:
            size = reads[i % len(reads)]
            i += 1
            chunk = body[at:at + size]
            at += len(chunk)
            decoder.receive_data(chunk or None)
            while True:
                event = decoder.next_event()
                out.append(event)
                if isinstance(event, (NeedData, Epilogue)):
                    break
            if not chunk:
                return out
    except (ValueError, RequestEntityTooLarge) as exc:
        return out + [type(exc).__name__]


@st.composite
def bodies(draw):
    boundary = draw(st.one_of(st.just(BOUNDARY), BCHARS))
    crlf = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    parts = []
    for n in range(draw(st.integers(0, 3))):
        data = draw(noisy_data(boundary))
        disposition = (b'form-data; name="f%d"; filename="x%d.csv"' % (n, n) if draw(st.booleans())
                       else b'form-data; name="f%d"' % n)
        trailing = draw(st.sampled_from([b"", b" ", b"\t "]))
        parts.append(b"--" + boundary + trailing + crlf + b"Content-Disposition: " + disposition + crlf + crlf
                     + data + crlf)
    closing = b"--" + boundary + b"--" + draw(st.sampled_from([b"", b"\r\n", b"  \n"]))
    body = draw(st.binary(max_size=8)) + b"".join(parts) + closing + draw(st.binary(max_size=8))
    if draw(st.booleans()):
        body = body[:draw(st.integers(0, len(body)))]  # a client that stops mid-body
    reads = draw(st.lists(st.integers(1, 64), min_size=1, max_size=4))
    return boundary, body, reads


@given(bodies())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_the_decoder_gives_werkzeugs_events_for_any_body_in_any_reads(case):
    boundary, body, reads = case
    assert events(Decoder, body, boundary, reads) == events(MultipartDecoder, body, boundary, reads)


@given(bodies())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_a_field_limit_trips_where_werkzeugs_does(case):
    boundary, body, reads = case
    assert events(Decoder, body, boundary, reads, limit=16) == events(MultipartDecoder, body, boundary, reads, limit=16)


def parse(parser_cls, body: bytes, boundary: bytes, buffer_size: int, limit: int | None = 1024) -> tuple:
    parser = parser_cls(stream_factory=lambda **_: io.BytesIO(), max_form_memory_size=limit, buffer_size=buffer_size,
                        max_form_parts=10)
    try:
        form, files = parser.parse(io.BytesIO(body), boundary, len(body))
    except (ValueError, RequestEntityTooLarge) as exc:
        return (type(exc).__name__,)
    return (list(form.items(multi=True)),
            [(name, f.filename, f.headers.get("Content-Type"), f.stream.read()) for name, f in files.items(multi=True)])


@given(bodies(), st.integers(1, 100))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_the_parser_gives_werkzeugs_fields_and_files(case, buffer_size):
    boundary, body, _reads = case
    assert parse(Parser, body, boundary, buffer_size) == parse(MultiPartParser, body, boundary, buffer_size)


def browser_body(boundary: bytes, data: bytes) -> bytes:
    return (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="activity_code"\r\n\r\nEXPLORE\r\n'
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; filename="week.csv"\r\n'
            b"Content-Type: text/csv\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n")


@pytest.mark.parametrize("buffer_size", [7, 64 * 1024, 1024 * 1024 - 64 * 1024])
def test_a_csv_of_short_lines_and_boundary_look_alikes_arrives_whole(buffer_size):
    """The case that made werkzeug's search slow (a line break every few bytes), with lines that
    start like the boundary but are not it, arrives byte for byte, as werkzeug reads it."""
    data = b"a,b,c\n1,2,3\n" * 30_000 + b"--" + BOUNDARY + b"x\r\n" + b"\r\n--" + BOUNDARY[:-2] + b"\r\nend"
    body = browser_body(BOUNDARY, data)
    ours = parse(Parser, body, BOUNDARY, buffer_size, limit=None)
    assert ours == parse(MultiPartParser, body, BOUNDARY, buffer_size, limit=None)
    assert ours[0] == [("activity_code", "EXPLORE")]
    assert ours[1] == [("files", "week.csv", "text/csv", data)]


def test_a_body_of_look_alike_delimiters_is_searched_by_werkzeugs_pattern():
    """A hostile body: a one-letter boundary and a file made of `--a` lines that are not boundary
    lines (each followed by a letter). Trying each by hand in Python would cost many times what
    werkzeug's compiled pattern costs; past BoundaryFinder.LOOK_ALIKES the pattern takes over,
    and the upload still decodes as werkzeug decodes it."""
    data = b"\n--ax" * 200_000
    body = browser_body(b"a", data)
    ours = parse(Parser, body, b"a", 64 * 1024, limit=None)
    assert ours == parse(MultiPartParser, body, b"a", 64 * 1024, limit=None)
    assert ours[1] == [("files", "week.csv", "text/csv", data)]
    finder = BoundaryFinder(b"a", prefix_required=True)
    assert finder.search(bytearray(data + b"\r\n--a--\r\n")).start() == len(data)
    assert finder._pattern is not None  # the compiled pattern found it
    few = BoundaryFinder(b"a", prefix_required=True)
    assert few.search(bytearray(b"\n--ax" * (BoundaryFinder.LOOK_ALIKES - 1) + b"\n--a\n")) is not None
    assert few._pattern is None  # a handful of look-alikes never compiles anything


def test_the_decoder_sets_every_attribute_werkzeugs_sets():
    """Decoder does not call werkzeug's __init__ (it would compile the patterns this replaces), so
    a Werkzeug upgrade that adds state must show here rather than as a broken upload."""
    assert set(vars(Decoder(BOUNDARY))) == set(vars(MultipartDecoder(BOUNDARY)))


def test_the_line_break_werkzeug_uses_is_the_one_the_finder_knows():
    assert LINE_BREAK == b"(?:\r\n|\n|\r)"
