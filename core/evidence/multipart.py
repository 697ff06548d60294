"""werkzeug's multipart/form-data decoder with less work per request and per read; same results.

werkzeug's sans-IO `MultipartDecoder` is driven here as `MultiPartParser.parse` drives it, with
three costs taken out (docs/performance.md, "Sixth session"):

- It compiles two regular expressions for every request's boundary (browsers make a new one per
  form), about 0.6 ms a request. Boundary lines are found here with `bytes.find`, two byte
  comparisons and one pattern compiled at import for what follows the delimiter
  (`BoundaryFinder`), matching what those expressions match; only a body with many look-alike
  delimiters in one read gets werkzeug's compiled pattern.
- Its boundary search scanned the whole buffer, trying a match at every line break (CSV has one
  every few bytes): about 1 ms per 100 KiB read that holds a boundary. `bytes.find` skips to the
  boundary itself.
- It copied every read of file data three times more than needed: a slice of the buffer to look
  for a partial boundary at its end, and a bytearray slice turned into bytes. One copy remains.

The results are werkzeug's own: tests/test_multipart_decoder.py compares the two on generated
bodies (Hypothesis), line breaks, look-alike boundaries and reads split anywhere. It relies on the
decoder's attributes in Werkzeug 3.1 (pinned in requirements.txt); that test fails if they move.
"""
from __future__ import annotations

import re
import typing as t

from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser
from werkzeug.sansio.multipart import (LINE_BREAK, LINE_BREAK_RE, Data, Epilogue, Field, File, MultipartDecoder, NeedData,
                                       State)

_CR, _LF = 13, 10
# What follows the delimiter on a boundary line, as in werkzeug's patterns (where it is group 1):
# `--` (the closing delimiter), horizontal space and an optional line break; or horizontal space and
# a line break. Compiled once: it does not depend on the boundary. [^\S\n\r] is horizontal space.
_SUFFIX = re.compile(rb"--[^\S\n\r]*%s?|[^\S\n\r]*%s" % (LINE_BREAK, LINE_BREAK))


class BoundaryMatch:
    """What werkzeug's decoder reads from a regex match: start(), end() and group(1)."""

    __slots__ = ("_start", "_end", "_tail")

    def __init__(self, start: int, end: int, tail: bytes):
        self._start, self._end, self._tail = start, end, tail

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end

    def group(self, index: int) -> bytes:
        if index != 1:
            raise IndexError(index)
        return self._tail


class BoundaryFinder:
    """Finds a boundary line as werkzeug's pattern `LB--boundary(--H*LB?|H*LB)` does (LB a CRLF,
    LF or CR; H horizontal space), with the leading line break required, or optional as for the
    first boundary (`prefix_required=False`, werkzeug's `preamble_re`). RFC 2046 section 5.1.1.

    search(data, pos) returns the leftmost match starting at or after `pos` (a BoundaryMatch or a
    re.Match), or None. Python work per search is bounded: after LOOK_ALIKES delimiters that are not
    boundary lines, the rest is searched with werkzeug's compiled pattern, so a body built of
    look-alikes costs what it costs werkzeug."""

    # Delimiters tried by hand per search before werkzeug's compiled pattern takes over: a real
    # body has one per part, while a hostile one can hold a look-alike every few bytes.
    LOOK_ALIKES = 8

    def __init__(self, boundary: bytes, *, prefix_required: bool):
        self.delimiter = b"--" + boundary
        self.prefix_required = prefix_required
        self._pattern: re.Pattern | None = None

    def search(self, data: bytes | bytearray, pos: int = 0):
        at = data.find(self.delimiter, pos)
        for _ in range(self.LOOK_ALIKES):
            if at == -1:
                return None
            match = self._match_at(data, at, pos)
            if match is not None:
                return match
            at = data.find(self.delimiter, at + 1)
        if at == -1:
            return None
        # Many delimiters that are not boundary lines in one read (a hostile body): werkzeug's own
        # pattern from here on, which tries each at C speed. No match can start before at - 2.
        return self.pattern().search(data, max(pos, at - 2))

    def pattern(self) -> re.Pattern:
        """werkzeug's compiled pattern for this boundary (compiled on first use)."""
        if self._pattern is None:
            decoder = MultipartDecoder(self.delimiter[2:])
            self._pattern = decoder.boundary_re if self.prefix_required else decoder.preamble_re
        return self._pattern

    def _match_at(self, data: bytes | bytearray, at: int, pos: int) -> BoundaryMatch | None:
        if at - 2 >= pos and data[at - 2] == _CR and data[at - 1] == _LF:
            start = at - 2
        elif at - 1 >= pos and data[at - 1] in (_CR, _LF):
            start = at - 1
        elif self.prefix_required:
            return None
        else:
            start = at
        tail = at + len(self.delimiter)
        suffix = _SUFFIX.match(data, tail)  # C speed whatever the client puts after the delimiter
        if suffix is None:
            return None  # a delimiter that does not end its line is data
        end = suffix.end()
        return BoundaryMatch(start, end, bytes(data[tail:end]))


class Decoder(MultipartDecoder):
    """werkzeug's MultipartDecoder with BoundaryFinder for its patterns and fewer copies per read."""

    def __init__(self, boundary: bytes, max_form_memory_size: int | None = None, *, max_parts: int | None = None):
        # Not super().__init__: that compiles the two patterns this class replaces. The attributes
        # are the ones Werkzeug 3.1's __init__ sets.
        self.buffer = bytearray()
        self.complete = False
        self.max_form_memory_size = max_form_memory_size
        self.max_parts = max_parts
        self.state = State.PREAMBLE
        self.boundary = boundary
        self.preamble_re = BoundaryFinder(boundary, prefix_required=False)
        self.boundary_re = BoundaryFinder(boundary, prefix_required=True)
        self._search_position = 0
        self._parts_decoded = 0

    def _parse_data(self, data: bytes | bytearray, *, start: bool) -> tuple[bytes, int, bool]:
        # werkzeug 3.1's step, with the partial boundary looked for in place rather than in a copy
        # of the buffer, and the data copied out once (a bytearray slice is itself a copy).
        data_start = t.cast(t.Match[bytes], LINE_BREAK_RE.match(data)).end() if start else 0
        match = self.boundary_re.search(data)  # werkzeug's find() first only spared its slow regex
        if match is not None:
            self.state = State.EPILOGUE if match.group(1).startswith(b"--") else State.PART
            data_end, del_index = match.start(), match.end()
        else:
            data_end = del_index = self._partial_boundary_at(data, data_start)
        with memoryview(data) as view:
            chunk = bytes(view[data_start:data_end])
        return chunk, del_index, match is None

    def _partial_boundary_at(self, data: bytes | bytearray, data_start: int) -> int:
        """werkzeug's _last_partial_boundary_index(data[data_start:]) + data_start, without the
        slice: where a boundary cut by the end of this read could begin (a CR or LF within one
        delimiter's length of the end), or the end of the data."""
        size = len(data)
        earliest = size - len(b"\r\n--" + self.boundary)
        found = [i for i in (data.rfind(b"\n", data_start), data.rfind(b"\r", data_start)) if i >= earliest and i != -1]
        return min(found, default=size)


class Parser(MultiPartParser):
    """MultiPartParser driving Decoder; the loop is werkzeug 3.1's `MultiPartParser.parse`: the
    same limits (max_form_memory_size per field, max_form_parts), field charsets and FileStorage
    objects from stream_factory."""

    decoder_class = Decoder

    def parse(self, stream: t.IO[bytes], boundary: bytes,
              content_length: int | None) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
        decoder = self.decoder_class(boundary, max_form_memory_size=self.max_form_memory_size,
                                     max_parts=self.max_form_parts)
        fields: list[tuple[str, str]] = []
        files: list[tuple[str, FileStorage]] = []
        part: Field | File | None = None
        container: t.Any = None
        field_size: int | None = None
        while True:
            chunk = stream.read(self.buffer_size)
            decoder.receive_data(chunk or None)
            event = decoder.next_event()
            while not isinstance(event, (Epilogue, NeedData)):
                if isinstance(event, Field):
                    part, container, field_size = event, [], 0
                elif isinstance(event, File):
                    part, field_size = event, None
                    container = self.start_file_streaming(event, content_length)
                elif isinstance(event, Data):
                    if self.max_form_memory_size is not None and field_size is not None:
                        field_size += len(event.data)
                        if field_size > self.max_form_memory_size:
                            raise RequestEntityTooLarge()
                    if isinstance(part, Field):
                        container.append(event.data)
                        if not event.more_data:
                            fields.append((part.name, b"".join(container).decode(
                                self.get_part_charset(part.headers), "replace")))
                    else:
                        container.write(event.data)
                        if not event.more_data:
                            container.seek(0)
                            files.append((part.name, FileStorage(container, part.filename, part.name,
                                                                 headers=part.headers)))
                event = decoder.next_event()
            if not chunk:
                return self.cls(fields), self.cls(files)
