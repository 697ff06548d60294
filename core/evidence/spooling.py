"""Reading one uploaded file once: the size limit, SHA-256 and the PDF active-content scan all
happen in a single pass, leaving a seekable body that the type check and storage.put reread.

The web door's multipart parser writes each file part into an UploadSpool, which makes that pass
as the bytes arrive and keeps nothing past the limit; read_once then only asks it for the result.
Any other seekable stream at offset 0 is read in place (copying it into a second spool cost a
full extra write and read); only a forward-only stream is spooled here.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 1024 * 1024  # large reads: per-chunk Python overhead dominated at 64 KiB; memory stays one chunk
SPOOL_MAX = 1024 * 1024  # bytes kept in memory per spooled file before the spool moves to disk
UPLOAD_SPOOL_MAX = 500 * 1024  # as werkzeug's own spool: up to ten parts per request stay small


class TooLarge(Exception):
    """The stream held more than the limit; at most limit+1 bytes were read."""


@dataclass
class Body:
    stream: BinaryIO  # seekable; the file's bytes start at offset 0
    owned: bool  # a spool made here, closed by close(); a borrowed stream is the door's to close
    size: int
    sha256: str
    pdf_action: str  # "" or the first active-content action a PDF names

    def close(self) -> None:
        if self.owned:
            self.stream.close()


def _borrowable(stream: BinaryIO) -> bool:
    try:
        return stream.seekable() and stream.tell() == 0
    except (AttributeError, OSError, ValueError):
        return False


class _Meter:
    """The one pass over a file's bytes: its size against the limit, SHA-256 and the PDF check."""

    def __init__(self, limit: int, pdf: bool):
        self.limit, self.size = limit, 0
        self.digest = hashlib.sha256()
        self.finder = ActiveContentFinder() if pdf else None

    def take(self, data: bytes) -> bytes:
        """Count all of `data`; measure and return what of it lies within limit+1 bytes."""
        room = self.limit + 1 - self.size
        self.size += len(data)
        kept = data if len(data) <= room else data[:max(room, 0)]
        if kept:
            self.digest.update(kept)
            if self.finder:
                self.finder.feed(kept)
        return kept

    def body(self, stream: BinaryIO, owned: bool) -> Body:
        if self.size > self.limit:
            raise TooLarge()
        stream.seek(0)
        return Body(stream, owned, self.size, self.digest.hexdigest(), self.finder.found if self.finder else "")


class UploadSpool(tempfile.SpooledTemporaryFile):
    """Where the web door's multipart parser writes one file part. The single pass that sizes,
    hashes and (for a .pdf) scans the file happens here, as the bytes arrive from the client,
    and nothing past limit+1 bytes is kept: an oversized file costs neither disk nor a reread.
    The parser still drains the rest of the part (MAX_CONTENT_LENGTH bounds the request).

    With `directory` (the local storage's root, Storage.spool_dir), a part that outgrows memory
    moves to an unnamed file there (O_TMPFILE) that storage can link into place instead of
    copying it (Storage.adopt): its bytes are then the very bytes hashed here. Where that is not
    possible the spool moves to an ordinary temporary file, as before."""

    def __init__(self, limit: int, *, pdf: bool, directory: str | None = None):
        super().__init__(max_size=UPLOAD_SPOOL_MAX, mode="w+b")
        self.meter = _Meter(limit, pdf)
        self._directory = directory
        self._linkable = False
        self._release = False  # release_on_close

    def write(self, data) -> int:
        kept = self.meter.take(data)
        if kept:
            if not self._rolled and self._file.tell() + len(kept) > self._max_size:
                # Moved to disk before this write, not after it: a read of ~1 MiB would otherwise be
                # copied into memory only to be copied out again at once.
                self.rollover()
            super().write(kept)
        return len(data)

    def rollover(self) -> None:
        if self._rolled or not self._directory:
            return super().rollover()
        try:
            # No O_EXCL (which tempfile.TemporaryFile sets): only without it can the file be linked.
            fd = os.open(self._directory, os.O_TMPFILE | os.O_RDWR, 0o600)
        except (AttributeError, OSError):
            return super().rollover()
        memory, self._file = self._file, open(fd, "w+b")  # noqa: SIM115 - closed with the spool
        del self._TemporaryFileArgs
        position = memory.tell()
        self._file.write(memory.getbuffer())
        self._file.seek(position)
        self._rolled = self._linkable = True

    def release_on_close(self) -> None:
        """Once this spool is the stored object (Storage.adopt linked and fsynced it) and nothing
        will read it again soon: let its pages leave the page cache when it closes. Evidence is
        written once and read rarely; kept cached, a day of uploads crowds out the database's
        pages (MinIO's own large writes bypass the cache). Only for a linked file: on one never
        linked, DONTNEED would first write its dirty pages to disk, which the close just drops."""
        self._release = self._linkable

    def close(self) -> None:
        if self._release and not self._file.closed:
            try:
                os.posix_fadvise(self._file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
        super().close()

    def disk_file(self):
        """The unnamed file on the storage's disk holding this part, or None while the part is in
        memory or was spooled elsewhere. Nothing writes to it once the request is parsed."""
        return self._file if self._linkable else None


def read_once(stream: BinaryIO, limit: int, *, pdf: bool) -> Body:
    """Take at most limit+1 bytes from `stream`; raise TooLarge past the limit."""
    if isinstance(stream, UploadSpool) and stream.meter.limit == limit and (stream.meter.finder or not pdf):
        return stream.meter.body(stream, owned=False)  # already measured as it arrived
    borrowed = _borrowable(stream)
    out = stream if borrowed else tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)
    meter = _Meter(limit, pdf)
    try:
        # The limit is enforced while reading: at most limit+1 bytes are ever taken from the stream.
        while chunk := stream.read(min(CHUNK, limit + 1 - meter.size)):
            kept = meter.take(chunk)
            if meter.size > limit:
                raise TooLarge()
            if not borrowed:
                out.write(kept)
        return meter.body(out, owned=not borrowed)
    except BaseException:
        if not borrowed:
            out.close()
        raise


class ActiveContentFinder:
    """Streams over a file looking for the PDF names /JavaScript and /Launch, #xx escapes
    decoded. Keeps a short tail so a name split across two chunks is still found."""

    _NAME = re.compile(rb"/(?:[A-Za-z]|#[0-9A-Fa-f]{2}){5,40}")
    _BAD = {b"javascript": "JavaScript", b"launch": "Launch"}

    def __init__(self) -> None:
        self.tail = b""
        self.found = ""

    def feed(self, chunk: bytes) -> None:
        if self.found:
            return
        window = self.tail + chunk
        for match in self._NAME.finditer(window):
            name = re.sub(rb"#([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), match.group()[1:]).lower()
            if name in self._BAD:
                self.found = self._BAD[name]
                return
        self.tail = window[-128:]
