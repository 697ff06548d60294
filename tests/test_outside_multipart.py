"""An outside client against core/evidence/multipart.py: bodies where the faster decoder costs the
server much more CPU than werkzeug's own MultiPartParser for the same bytes.

The outcome (fields, files, errors) is werkzeug's in every case here; what differs is the work.
BoundaryFinder._match_at walks the horizontal whitespace after a delimiter (`--boundary` or
`--boundary--`) one byte at a time in Python, where werkzeug's pattern runs `[^\\S\\n\\r]*` in C.
An attacker chooses the bytes after a delimiter, so one request can hold a megabyte of spaces
there. Measured in one run (time.process_time, same body, READ_SIZE reads):
`--a--` + 983 000 spaces: about 70-110 ms against werkzeug's 10-15 ms (6-11x);
a file of `\\n--a` + long space/tab runs: 2.1-2.8x werkzeug over the whole body (2.0 s against
0.8 s for 19.6 MB).

No timing is asserted: the tests count the Python-level byte reads the decoder makes from its
buffer (werkzeug's decoder makes none; a regex or bytes.find reads at C level), which is the cost
that scales with the attacker's bytes: it must stay a small constant whatever the body holds. The
outcome is compared with werkzeug's own parser. No services needed.

Fixed: what follows a delimiter is matched by one pattern compiled at import (multipart._SUFFIX).
"""
from __future__ import annotations

import io

import pytest
from werkzeug.formparser import MultiPartParser

from core.evidence.form_parsing import READ_SIZE
from core.evidence.multipart import Decoder, Parser

BOUNDED = 64  # Python byte reads per request that do not grow with the body


class CountingBuffer(bytearray):
    """A decoder buffer that counts single-byte reads made from Python."""

    byte_reads = 0

    def __getitem__(self, index):
        if isinstance(index, int):
            CountingBuffer.byte_reads += 1
        return super().__getitem__(index)


class CountingDecoder(Decoder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffer = CountingBuffer()


class CountingParser(Parser):
    decoder_class = CountingDecoder


def outcome(parser_cls, body: bytes, boundary: bytes) -> tuple:
    """Fields and files, or the error, for `body` parsed as the app parses it (READ_SIZE reads,
    1 MiB field limit)."""
    parser = parser_cls(stream_factory=lambda **_: io.BytesIO(), max_form_memory_size=1024 * 1024,
                        buffer_size=READ_SIZE, max_form_parts=1000)
    try:
        form, files = parser.parse(io.BytesIO(body), boundary, len(body))
        return (list(form.items(multi=True)), [(n, f.filename, f.stream.read()) for n, f in files.items(multi=True)])
    except ValueError as exc:
        return (type(exc).__name__,)


def parse_counting(body: bytes, boundary: bytes) -> tuple[tuple, int]:
    """(our outcome, Python byte reads our decoder made)."""
    CountingBuffer.byte_reads = 0
    return outcome(CountingParser, body, boundary), CountingBuffer.byte_reads


def file_part(boundary: bytes) -> bytes:
    return b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; filename="week.csv"\r\n\r\n'


@pytest.mark.parametrize("space", [b" ", b"\t", b"\x0b", b"\x0c"])
def test_a_closing_delimiter_followed_by_a_megabyte_of_spaces_costs_no_more_than_werkzeug(space):
    """Minimal body: `--a--` then ~1 MB of one horizontal-space byte then `x`, boundary `a`.
    Both parsers give an empty form (the closing delimiter ends the form in the preamble); ours walks
    every space in Python (about 6-11x werkzeug's CPU for this request)."""
    body = b"--a--" + space * (READ_SIZE - 100) + b"x"
    ours, our_reads = parse_counting(body, b"a")
    theirs = outcome(MultiPartParser, body, b"a")
    assert ours == theirs == ([], [])
    assert our_reads <= BOUNDED, f"{our_reads} Python byte reads"


def test_a_file_ending_in_a_closing_delimiter_and_a_run_of_spaces_costs_no_more_than_werkzeug():
    """The same inside a file part: its data then `\\n--a--` + ~1 MB of spaces."""
    body = file_part(b"a") + b"data\n--a--" + b" " * (READ_SIZE - 200) + b"x"
    ours, our_reads = parse_counting(body, b"a")
    theirs = outcome(MultiPartParser, body, b"a")
    assert ours == theirs == ([], [("files", "week.csv", b"data")])
    assert our_reads <= BOUNDED, f"{our_reads} Python byte reads"


def test_a_file_of_look_alike_delimiters_followed_by_long_tab_runs_costs_no_more_than_werkzeug():
    """A file whose data is `\\n--a` + 100 000 tabs + `y`, 8 times: each is a delimiter that is not
    a boundary line (the tabs end in `y`, not a line break). Sustained over a large upload this is
    2-3x werkzeug's CPU for the whole body."""
    data = (b"\n--a" + b"\t" * 100_000 + b"y") * 8
    body = file_part(b"a") + data + b"\r\n--a--\r\n"
    ours, our_reads = parse_counting(body, b"a")
    theirs = outcome(MultiPartParser, body, b"a")
    assert ours == theirs == ([], [("files", "week.csv", data)])
    assert our_reads <= BOUNDED, f"{our_reads} Python byte reads"
