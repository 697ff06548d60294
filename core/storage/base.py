"""The storage interface every backend implements, and the helpers they share.

Callers (uploads, review downloads, retention) speak only this interface, so the local backend
used by `make run` and MinIO in production behave the same; tests/test_storage_contract.py runs
one suite over both.
"""
from __future__ import annotations

import abc
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO
from urllib.parse import quote

from core.platform.errors import NotFound, ValidationError
from core.platform.filenames import sanitise_filename
from core.platform.settings import Settings

DEFAULT_CHUNK_SIZE = 256 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime  # tz-aware UTC


@dataclass(frozen=True)
class SignedUrl:
    key: str
    url: str
    expires_at: datetime  # tz-aware UTC; never later than issue time + 3600 s
    ttl: int  # seconds, after clamping


class ObjectNotFound(NotFound):
    # The key stays on the exception for logs; error bodies never show the storage layout.
    def __init__(self, key: str):
        super().__init__("object_not_found", "The stored file does not exist.")
        self.key = key


class InvalidKey(ValidationError):
    """Keys are made by the app (never chosen by users); a bad one is a bug, refused loudly."""

    def __init__(self, key: str, reason: str):
        super().__init__("invalid_storage_key", f"Storage key is not allowed: {reason}.")
        self.key = key


def validate_key(key: str) -> str:
    """Refuse keys that could escape the storage root or confuse link signatures.

    '|' is refused because local links sign `key|exp|fn`; without a '|' in the key that message
    parses one way only.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey(str(key), "empty")
    if "\x00" in key or "\\" in key or "|" in key or any(ord(c) < 32 for c in key):
        raise InvalidKey(key, "contains a NUL, control character, backslash or '|'")
    if key.startswith("/") or re.match(r"^[A-Za-z]:", key):
        raise InvalidKey(key, "absolute path")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidKey(key, "empty, '.' or '..' path segment")
    return key


def validate_prefix(prefix: str) -> str:
    """A prefix may be "" or end with "/", but must not climb out of the root either."""
    if prefix:
        validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._()\- ]+")


def content_disposition(filename: str | None) -> str:
    """`attachment` always, so no browser renders evidence inline (RFC 6266 + RFC 5987).

    filename= carries an ASCII approximation for old clients; filename*= the exact UTF-8 name.
    """
    name = sanitise_filename(filename, fallback="download")
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    ascii_name = _UNSAFE_ASCII.sub("_", ascii_name).strip(" _")
    if not ascii_name.strip("."):
        ascii_name = "download"
    elif ascii_name.startswith("."):  # "日本.pdf" -> "download.pdf", not a hidden ".pdf"
        ascii_name = "download" + ascii_name
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


class ExactReader:
    """Hands out exactly `length` bytes of `stream`, never more. A stream that ends early is a
    caller bug (ValueError), not a storage failure, and both backends report it the same way."""

    def __init__(self, stream: BinaryIO, length: int):
        if not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be a non-negative int, got {length!r}")
        self._stream = stream
        self.remaining = length
        self.length = length

    def read(self, size: int = -1) -> bytes:
        if self.remaining == 0:
            return b""
        n = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self._stream.read(n)
        if not data:
            raise ValueError(f"stream ended after {self.length - self.remaining} of {self.length} bytes")
        self.remaining -= len(data)
        return data


class Storage(abc.ABC):
    """One object store. Every backend failure surfaces as core.platform.errors.StorageError
    (code `storage_unavailable`), so callers can roll back cleanly; a missing object is
    ObjectNotFound."""

    name: str = "abstract"

    def __init__(self, settings: Settings):
        self.settings = settings

    # -- objects ------------------------------------------------------------------------------
    @abc.abstractmethod
    def put(self, key: str, stream: BinaryIO, length: int, content_type: str = "application/octet-stream") -> None:
        """Store exactly `length` bytes read from `stream`, streamed (never all in memory).
        A failed put leaves no object behind."""

    def spool_dir(self) -> str | None:
        """A directory on this store's own disk where an upload can be spooled so that adopt()
        links it instead of copying, or None (the default: spool anywhere)."""
        return None

    def adopt(self, key: str, file: BinaryIO, length: int, content_type: str = "application/octet-stream") -> bool:
        """Store the `length` bytes of `file` (a spool nothing writes to any more) under `key`.
        Returns True when the stored object is that very file (linked into place, no copy), and
        False when the bytes were copied as put() does (the default). Errors as put()."""
        file.seek(0)
        self.put(key, file, length, content_type)
        return False

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A streamed binary reader; use it as a context manager."""

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """The object's bytes in chunks. open() runs at the first next(), so errors arrive then."""
        with self.open(key) as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Raises ObjectNotFound when the key is absent."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Deleting a missing key is not an error."""

    @abc.abstractmethod
    def delete_many(self, keys: Iterable[str]) -> list[str]:
        """Delete every key; return the keys that could not be deleted (missing ones count as done)."""

    @abc.abstractmethod
    def list(self, prefix: str, older_than: datetime | None = None,
             start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in ascending key order (code points, which is
        S3's UTF-8 byte order), listed lazily page by page; with older_than, only last_modified <
        older_than; with start_after, only keys after it (a cursor for paging, as S3's StartAfter)."""

    # -- links --------------------------------------------------------------------------------
    @abc.abstractmethod
    def signed_url(self, key: str, ttl: int | None = None, filename: str | None = None, *,
                   _now: datetime | None = None) -> SignedUrl:
        """A download link that makes the browser save `filename` as an attachment.
        ttl goes through settings.clamp_ttl (at most 3600 s). `_now` is for tests only."""

    def signed_urls(self, items: Iterable[tuple[str, str | None]], ttl: int | None = None) -> list[SignedUrl]:
        """One link per (key, filename), in order."""
        return [self.signed_url(key, ttl=ttl, filename=filename) for key, filename in items]

    # -- lifecycle ----------------------------------------------------------------------------
    @abc.abstractmethod
    def check(self) -> None:
        """Raise StorageError if the backend cannot serve requests (used by /readyz)."""

    @abc.abstractmethod
    def ensure_ready(self) -> None:
        """Idempotent start-up preparation (directories, bucket, privacy)."""

    # -- shared helpers -----------------------------------------------------------------------
    def _ttl(self, ttl: int | None) -> int:
        return self.settings.clamp_ttl(ttl)

    @staticmethod
    def _default_filename(key: str, filename: str | None) -> str:
        return sanitise_filename(filename or key.rsplit("/", 1)[-1], fallback="download")
