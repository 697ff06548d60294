"""MinIO (any S3-compatible store) behind the Storage interface. The only importer of the minio SDK.

The bucket is private; downloads go through presigned GET links whose response-header overrides
force an attachment, so the store itself never renders evidence inline.
"""
from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import BinaryIO
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from urllib3.util import Retry, Timeout

from core.platform.errors import StorageError
from core.platform.settings import Settings
from core.storage.base import (
    ExactReader,
    ObjectInfo,
    ObjectNotFound,
    SignedUrl,
    Storage,
    content_disposition,
    validate_key,
    validate_prefix,
)

PART_SIZE = 16 * 1024 * 1024  # one part in memory at a time; bounds RAM per upload
_MISSING_OBJECT = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}
_MISSING_POLICY = {"NoSuchBucketPolicy", "NoSuchPolicy"}


@contextmanager
def _translated(key: str | None = None):
    """Backend failures -> StorageError (callers roll back); a missing object -> ObjectNotFound."""
    try:
        yield
    except S3Error as exc:
        if key is not None and exc.code in _MISSING_OBJECT:
            raise ObjectNotFound(key) from None
        raise StorageError("storage_unavailable", f"Object storage refused the request ({exc.code}).") from exc
    except (MinioException, urllib3.exceptions.HTTPError) as exc:
        # Connection refused, timeouts, bad responses: the class name is enough and leaks nothing.
        raise StorageError("storage_unavailable", f"Object storage is unreachable ({type(exc).__name__}).") from exc


class _ObjectReader(io.RawIOBase):
    """A streamed object body that returns its connection to the pool when closed."""

    def __init__(self, response, key: str):
        self._response = response
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        with _translated(self._key):
            data = self._response.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            self._response.release_conn()
        super().close()


class MinioStorage(Storage):
    name = "minio"

    def __init__(self, settings: Settings, *, connect_timeout: float = 5.0, read_timeout: float = 60.0,
                 retries: int = 2):
        super().__init__(settings)
        self.bucket = settings.minio_bucket
        # Our own pool: the SDK default retries 5 times with 5-minute timeouts, which would hang
        # /readyz and uploads for minutes when MinIO is down.
        http = urllib3.PoolManager(
            timeout=Timeout(connect=connect_timeout, read=read_timeout),
            maxsize=10,
            retries=Retry(total=retries, connect=retries, read=0, backoff_factor=0.2,
                          status_forcelist=[500, 502, 503, 504]),
        )
        # region= makes presigning a pure computation (no bucket-location request).
        self.client = Minio(
            settings.minio_endpoint,
            access_key=settings.minio_access_key,
            secret_key=settings.minio_secret_key,
            secure=settings.minio_secure,
            region=settings.minio_region,
            http_client=http,
        )
        # Browsers reach the store by another name than the app does (minio:9000 inside compose).
        # A SigV4 signature covers the Host header, so links are signed by a second client that
        # names the public host; with the region fixed it never opens a connection.
        self.link_client = self.client
        if settings.minio_public_url:
            public = urlsplit(settings.minio_public_url)
            self.link_client = Minio(
                public.netloc,
                access_key=settings.minio_access_key,
                secret_key=settings.minio_secret_key,
                secure=public.scheme == "https",
                region=settings.minio_region,
                http_client=http,
            )

    # -- objects ------------------------------------------------------------------------------
    def put(self, key: str, stream: BinaryIO, length: int, content_type: str = "application/octet-stream") -> None:
        validate_key(key)
        reader = ExactReader(stream, length)
        with _translated():
            # With a known length the SDK reads and sends one part at a time; an interrupted
            # multipart upload is aborted by the SDK, so nothing becomes visible.
            # x-amz-acl: private is S3's default said out loud (MinIO accepts 'private' since
            # minio/minio#9000); S3 stores that honour object ACLs then refuse anonymous reads
            # even if a bucket-level setting drifts.
            self.client.put_object(self.bucket, key, reader, length,
                                   content_type=content_type or "application/octet-stream",
                                   metadata={"x-amz-acl": "private"},
                                   part_size=PART_SIZE, num_parallel_uploads=1)

    def open(self, key: str) -> BinaryIO:
        validate_key(key)
        with _translated(key):
            response = self.client.get_object(self.bucket, key)
        return _ObjectReader(response, key)  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        with _translated(key):
            obj = self.client.stat_object(self.bucket, key)
        return ObjectInfo(key=key, size=int(obj.size or 0), last_modified=_utc(obj.last_modified))

    def delete(self, key: str) -> None:
        validate_key(key)
        with _translated():  # S3 answers 204 for a missing key, so nothing special here
            self.client.remove_object(self.bucket, key)

    def delete_many(self, keys: Iterable[str]) -> list[str]:
        keys = [validate_key(k) for k in keys]
        if not keys:
            return []
        failed: list[str] = []
        with _translated():
            # remove_objects() is lazy: nothing is deleted until its result is iterated.
            for error in self.client.remove_objects(self.bucket, (DeleteObject(k) for k in keys)):
                if error.code not in _MISSING_OBJECT:
                    failed.append(error.name or "")
        return failed

    def list(self, prefix: str, older_than: datetime | None = None,
             start_after: str | None = None) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        if older_than is not None and older_than.tzinfo is None:
            raise ValueError("older_than must be timezone-aware")
        with _translated():
            for obj in self.client.list_objects(self.bucket, prefix=prefix or None, recursive=True,
                                                start_after=start_after or None):
                if obj.is_dir or obj.object_name is None:
                    continue
                info = ObjectInfo(key=obj.object_name, size=int(obj.size or 0), last_modified=_utc(obj.last_modified))
                if older_than is None or info.last_modified < older_than:
                    yield info

    # -- links --------------------------------------------------------------------------------
    def signed_url(self, key: str, ttl: int | None = None, filename: str | None = None, *,
                   _now: datetime | None = None) -> SignedUrl:
        validate_key(key)
        ttl = self._ttl(ttl)
        # The signature carries whole seconds; the link dies at request_date + ttl.
        now = (_now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
        headers = {
            "response-content-disposition": content_disposition(self._default_filename(key, filename)),
            "response-content-type": "application/octet-stream",
            "response-cache-control": "private, no-store",
        }
        with _translated():
            url = self.link_client.presigned_get_object(self.bucket, key, expires=timedelta(seconds=ttl),
                                                   response_headers=headers, request_date=now)
        return SignedUrl(key=key, url=url, expires_at=now + timedelta(seconds=ttl), ttl=ttl)

    # -- lifecycle ----------------------------------------------------------------------------
    def check(self) -> None:
        with _translated():
            found = self.client.bucket_exists(self.bucket)
        if not found:
            raise StorageError("storage_unavailable", f"Bucket {self.bucket!r} does not exist.")

    def ensure_ready(self) -> None:
        with _translated():
            if not self.client.bucket_exists(self.bucket):
                try:
                    self.client.make_bucket(self.bucket)
                except S3Error as exc:  # another process won the race
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            # The bucket must be private: any policy (e.g. anonymous download) is removed.
            try:
                policy = self.client.get_bucket_policy(self.bucket)
            except S3Error as exc:
                if exc.code not in _MISSING_POLICY:
                    raise
                policy = ""
            if policy.strip():
                self.client.delete_bucket_policy(self.bucket)


def _utc(value: datetime | None) -> datetime:
    if value is None:  # S3 always sends Last-Modified; be safe rather than crash a listing
        return datetime.fromtimestamp(0, timezone.utc)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
