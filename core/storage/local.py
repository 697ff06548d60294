"""Files under LOCAL_STORAGE_ROOT, with download links signed by the app.

Links point at `/api/storage/local` (api/local_links.py), which checks the HMAC and the expiry
before streaming the file, so the local backend gives the same guarantees as presigned MinIO
links: short-lived, tamper-proof, always an attachment.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import BinaryIO
from urllib.parse import quote, urlencode

from core.platform.errors import AuthError, StorageError
from core.platform.settings import Settings
from core.storage.base import (
    DEFAULT_CHUNK_SIZE,
    ExactReader,
    ObjectInfo,
    ObjectNotFound,
    SignedUrl,
    Storage,
    validate_key,
    validate_prefix,
)

LINK_PATH = "/api/storage/local"
_TMP_PREFIX = ".storage-tmp-"  # half-written files; never listed, never served
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _unavailable(action: str, exc: OSError) -> StorageError:
    # The OS message names the path only; no secrets live here.
    return StorageError("storage_unavailable", f"Local storage could not {action}: {exc.strerror or exc}")


class IntegrityMismatch(StorageError):
    """The stored bytes differ from the SHA-256 taken at upload."""

    def __init__(self, key: str):
        super().__init__("integrity_mismatch", "The stored file no longer matches what was uploaded.")
        self.key = key


class VerifyingReader:
    """A binary reader that hashes as it goes and keeps at least one byte back until the end of
    the object has been seen and the digest matched (see LocalStorage.open_verified)."""

    def __init__(self, fh: BinaryIO, key: str, sha256: str, on_mismatch=None):
        self._fh, self._key, self._expected, self._on_mismatch = fh, key, sha256, on_mismatch
        self._digest = hashlib.sha256()
        self._buffer = b""
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        want = None if size is None or size < 0 else size
        while not self._eof and (want is None or len(self._buffer) <= want):
            data = self._fh.read(max(want or 0, DEFAULT_CHUNK_SIZE))
            if not data:
                self._eof = True
                self._check()
            else:
                self._digest.update(data)
                self._buffer += data
        if want is None:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:want], self._buffer[want:]
        return out

    def _check(self) -> None:
        if not hmac.compare_digest(self._digest.hexdigest(), self._expected or ""):
            self._buffer = b""
            if self._on_mismatch is not None:
                self._on_mismatch()
            raise IntegrityMismatch(self._key)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "VerifyingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalStorage(Storage):
    name = "local"

    def __init__(self, settings: Settings, public_base_url: str = ""):
        super().__init__(settings)
        root = settings.local_storage_root
        # Relative roots are taken from the project root (like the SQLite default), not the cwd.
        self.root = os.path.realpath(root if os.path.isabs(root) else os.path.join(_PROJECT_ROOT, root))
        self.public_base_url = public_base_url.rstrip("/")

    # -- paths --------------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        validate_key(key)
        path = os.path.join(self.root, *key.split("/"))
        # Defence in depth against symlinks planted inside the root.
        if not os.path.realpath(path).startswith(self.root + os.sep):
            raise ObjectNotFound(key)
        return path

    def _key(self, path: str) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")

    @staticmethod
    def _info(key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key=key, size=st.st_size, last_modified=datetime.fromtimestamp(st.st_mtime, timezone.utc))

    # -- objects ------------------------------------------------------------------------------
    def put(self, key: str, stream: BinaryIO, length: int, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        reader = ExactReader(stream, length)
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=_TMP_PREFIX)
        except OSError as exc:
            raise _unavailable("create the file", exc) from exc
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := reader.read(DEFAULT_CHUNK_SIZE):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            # Atomic within one filesystem: readers see the old object or the whole new one.
            os.replace(tmp, path)
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise _unavailable("write the file", exc) from exc
            raise

    def spool_dir(self) -> str | None:
        return self.root

    def adopt(self, key: str, file: BinaryIO, length: int, content_type: str = "application/octet-stream") -> bool:
        """Link an unnamed spool (an O_TMPFILE file under the root, UploadSpool) into place: no
        copy of its bytes. Its data is flushed and fsynced first, as put() does, and it replaces
        the key atomically. Any file that cannot be linked (another disk, a named or deleted file,
        no /proc) is copied by put()."""
        path = self._path(key)
        directory, name = os.path.split(path)
        try:
            file.flush()
            fd = file.fileno()
            if os.fstat(fd).st_size != length:
                return super().adopt(key, file, length, content_type)  # put() says what is wrong
            os.fsync(fd)
            os.makedirs(directory, exist_ok=True)
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except (OSError, AttributeError, io.UnsupportedOperation):
            return super().adopt(key, file, length, content_type)
        tmp = _TMP_PREFIX + uuid.uuid4().hex
        try:
            try:
                # linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N: how an O_TMPFILE file gets a name.
                os.link(f"/proc/self/fd/{fd}", tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
            except OSError:
                return super().adopt(key, file, length, content_type)
            try:
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as exc:
                try:
                    os.unlink(tmp, dir_fd=dir_fd)
                except OSError:
                    pass
                raise _unavailable("write the file", exc) from exc
            return True
        finally:
            os.close(dir_fd)

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller closes it (context manager)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise _unavailable("read the file", exc) from exc

    def open_verified(self, key: str, sha256: str, on_mismatch=None) -> "VerifyingReader":
        """open(), checking the bytes against `sha256` (hex) while they are read: the last bytes
        are handed out only after the whole object matched, so a reader of an altered file never
        receives all of it. On a mismatch `on_mismatch()` runs (e.g. to have the file
        quarantined) and IntegrityMismatch is raised."""
        return VerifyingReader(self.open(key), key, sha256, on_mismatch)

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise _unavailable("read the file", exc) from exc
        if not os.path.isfile(path):
            raise ObjectNotFound(key)
        return self._info(key, st)

    def delete(self, key: str) -> None:
        try:
            os.remove(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _unavailable("delete the file", exc) from exc

    def delete_many(self, keys: Iterable[str]) -> list[str]:
        keys = [validate_key(k) for k in keys]  # refuse the whole batch before touching anything
        failed: list[str] = []
        for key in keys:
            try:
                self.delete(key)
            except StorageError:
                failed.append(key)
        return failed

    def list(self, prefix: str, older_than: datetime | None = None,
             start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        if older_than is not None and older_than.tzinfo is None:
            raise ValueError("older_than must be timezone-aware")
        # Walk only the deepest directory the prefix names, then filter on the full prefix.
        start_dir = os.path.join(self.root, *prefix.rsplit("/", 1)[0].split("/")) if "/" in prefix else self.root
        for full in self._walk_in_key_order(start_dir):
            key = self._key(full)
            if not key.startswith(prefix) or (start_after is not None and key <= start_after):
                continue
            try:
                st = os.stat(full)
            except FileNotFoundError:
                continue  # deleted while we walked
            info = self._info(key, st)
            if older_than is None or info.last_modified < older_than:
                yield info

    def _walk_in_key_order(self, directory: str) -> Iterator[str]:
        """File paths under `directory` in ascending key order, as S3 lists them: a directory
        sorts as its name + "/", so "a-b" comes before "a/x" (callers page with start_after)."""
        try:
            with os.scandir(directory) as it:
                entries = [(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e.path) for e in it
                           if not e.name.startswith(_TMP_PREFIX)]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise _unavailable("list files", exc) from exc
        for name, path in sorted(entries):
            if name.endswith("/"):
                yield from self._walk_in_key_order(path)
            elif os.path.isfile(path):
                yield path

    # -- links --------------------------------------------------------------------------------
    def _sign(self, key: str, exp: str, fn: str) -> str:
        message = f"{key}|{exp}|{fn}".encode()
        return hmac.new(self.settings.secret_key.encode(), message, hashlib.sha256).hexdigest()

    def signed_url(self, key: str, ttl: int | None = None, filename: str | None = None, *,
                   _now: datetime | None = None) -> SignedUrl:
        validate_key(key)
        ttl = self._ttl(ttl)
        now = _now or datetime.now(timezone.utc)
        exp = int(now.timestamp()) + ttl  # whole seconds, rounded down: never later than now + ttl
        fn = self._default_filename(key, filename)
        query = urlencode({"key": key, "exp": exp, "fn": fn, "sig": self._sign(key, str(exp), fn)}, quote_via=quote)
        return SignedUrl(key=key, url=f"{self.public_base_url}{LINK_PATH}?{query}",
                         expires_at=datetime.fromtimestamp(exp, timezone.utc), ttl=ttl)

    def verify_link(self, key: str, exp: str, fn: str, sig: str, *, _now: datetime | None = None) -> None:
        """Raise AuthError `link_invalid` on any tampering, `link_expired` once exp has passed.
        The signature is checked first, so a forged exp can never turn into `link_expired`."""
        if not all(isinstance(v, str) and v for v in (key, exp, fn, sig)) or not exp.isdigit() or len(exp) > 12:
            raise AuthError("link_invalid", "This download link is not valid.")
        expected = self._sign(key, exp, fn)
        if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
            raise AuthError("link_invalid", "This download link is not valid.")
        now = (_now or datetime.now(timezone.utc)).timestamp()
        if now > int(exp):
            raise AuthError("link_expired", "This download link has expired; ask for a new one.")

    # -- lifecycle ----------------------------------------------------------------------------
    def check(self) -> None:
        if not os.path.isdir(self.root):
            raise StorageError("storage_unavailable", "Local storage root is missing or not a directory.")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError("storage_unavailable", "Local storage root is not writable.")

    def ensure_ready(self) -> None:
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise _unavailable("create its root directory", exc) from exc
        self.check()
