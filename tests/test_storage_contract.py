"""One contract suite for every storage backend, over real HTTP.

local: the real app (create_app) serves its signed links on a loopback port.
minio: the MinIO backend against moto's S3 server (tests/services/s3server.py). moto checks
neither SigV4 signatures nor link expiry, so for MinIO links we assert what the link carries
(X-Amz-Expires <= 3600, the disposition override) and that it downloads; expiry and tampering
are checked end to end on the local backend, whose links the app itself verifies.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from minio.error import S3Error

from core.platform.errors import StorageError
from core.storage import BACKENDS, LocalStorage, build_storage, content_disposition
from core.storage.base import InvalidKey, ObjectNotFound, Storage

from tests.services.ports import free_port

MB = 1024 * 1024
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Backend:
    """The storage under test plus how to fetch one of its links."""

    def __init__(self, kind: str, storage: Storage, base_url: str = ""):
        self.kind = kind
        self.storage = storage
        self.base_url = base_url  # local links are relative to the app root

    def get(self, url: str, **kwargs) -> requests.Response:
        return requests.get(self.base_url + url if url.startswith("/") else url, timeout=30, **kwargs)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.storage.put(key, io.BytesIO(data), len(data), "application/pdf")


def minio_env(s3: dict, bucket: str | None = None, endpoint: str | None = None) -> dict:
    return {
        "STORAGE_BACKEND": "minio",
        "MINIO_ENDPOINT": endpoint or s3["endpoint"],
        "MINIO_ACCESS_KEY": s3["access_key"],
        "MINIO_SECRET_KEY": s3["secret_key"],
        "MINIO_REGION": s3["region"],
        "MINIO_BUCKET": bucket or f"t-{uuid.uuid4().hex[:16]}",  # one bucket per test: no leaks between tests
    }


@pytest.fixture(params=["local", "minio"])
def backend(request, make_settings) -> Backend:
    if request.param == "local":
        app = request.getfixturevalue("app")  # the real app: its storage serves its own links
        return Backend("local", app.extensions["points"].storage, request.getfixturevalue("live_server"))
    storage = build_storage(make_settings(**minio_env(request.getfixturevalue("s3_endpoint"))))
    storage.ensure_ready()
    return Backend("minio", storage)


@pytest.fixture(params=["local", "minio"])
def dead_storage(request, make_settings, tmp_path) -> Storage:
    """A storage whose backend cannot serve: a root that is a plain file / a closed port."""
    if request.param == "local":
        blocker = tmp_path / "not-a-directory"
        blocker.write_bytes(b"")
        return build_storage(make_settings(LOCAL_STORAGE_ROOT=str(blocker)))
    s3 = request.getfixturevalue("s3_endpoint")
    return build_storage(make_settings(**minio_env(s3, endpoint=f"127.0.0.1:{free_port()}")))


def key_for(name: str, user: str = "u1") -> str:
    return f"evidence/{user}/EXPLORE/{uuid.uuid4().hex}-{name}"


# -- objects -----------------------------------------------------------------------------------

def test_put_open_round_trip_multi_mb(backend):
    data = os.urandom(5 * MB + 123)  # > one 256 KiB chunk, and > one S3 part for the SDK's maths
    key = key_for("big.pdf")
    backend.put_bytes(key, data)

    with backend.storage.open(key) as fh:
        assert fh.read() == data
    assert b"".join(backend.storage.iter_chunks(key, chunk_size=MB)) == data
    info = backend.storage.stat(key)
    assert (info.key, info.size) == (key, len(data))
    assert info.last_modified.tzinfo is not None
    assert abs(datetime.now(timezone.utc) - info.last_modified) < timedelta(minutes=5)
    assert backend.storage.exists(key)


def test_put_overwrites_and_short_stream_leaves_nothing(backend):
    key = key_for("a.pdf")
    backend.put_bytes(key, b"first")
    backend.put_bytes(key, b"second")
    with backend.storage.open(key) as fh:
        assert fh.read() == b"second"

    missing = key_for("short.pdf")
    with pytest.raises(ValueError):
        backend.storage.put(missing, io.BytesIO(b"only this"), 10 * MB)
    assert not backend.storage.exists(missing)
    assert [i.key for i in backend.storage.list(missing.rsplit("/", 1)[0] + "/")] == [key]


def test_missing_object(backend):
    key = key_for("nothing.pdf")
    assert not backend.storage.exists(key)
    with pytest.raises(ObjectNotFound) as info:
        backend.storage.stat(key)
    assert info.value.code == "object_not_found" and info.value.status == 404
    with pytest.raises(ObjectNotFound):
        with backend.storage.open(key):
            pass


@pytest.mark.parametrize("bad", ["../etc/passwd", "evidence/../../x", "/abs/key", "a\\b", "a\x00b", "a//b", "", "a|b"])
def test_unsafe_keys_are_refused(backend, bad):
    with pytest.raises(InvalidKey):
        backend.put_bytes(bad, b"x")
    with pytest.raises(InvalidKey):
        backend.storage.signed_url(bad)


def test_list_returns_only_keys_under_prefix(backend):
    mine = sorted([key_for("1.pdf", "u1"), key_for("2.pdf", "u1")])
    others = [key_for("3.pdf", "u10"), f"thumbnails/u1/EXPLORE/{uuid.uuid4().hex}.jpg"]  # u10 shares "u1"
    for key in mine + others:
        backend.put_bytes(key, b"data")

    listed = list(backend.storage.list("evidence/u1/"))
    assert sorted(i.key for i in listed) == mine
    assert all(i.size == 4 and i.last_modified.tzinfo is not None for i in listed)
    assert list(backend.storage.list("evidence/nobody/")) == []


def test_list_older_than(backend):
    old, new = key_for("old.pdf"), key_for("new.pdf")
    backend.put_bytes(old, b"old")
    backend.put_bytes(new, b"new")
    now = datetime.now(timezone.utc)
    prefix = "evidence/u1/"

    if backend.kind == "local":
        two_days_ago = (now - timedelta(days=2)).timestamp()
        os.utime(os.path.join(backend.storage.root, *old.split("/")), (two_days_ago, two_days_ago))
        assert [i.key for i in backend.storage.list(prefix, older_than=now - timedelta(days=1))] == [old]
    else:
        # S3 objects cannot be backdated: check both sides of the cut instead.
        assert {i.key for i in backend.storage.list(prefix, older_than=now + timedelta(minutes=5))} == {old, new}
        assert list(backend.storage.list(prefix, older_than=now - timedelta(minutes=5))) == []


def test_delete_many_removes_exactly_those_keys(backend):
    keys = [key_for(f"{n}.pdf") for n in range(5)]
    for key in keys:
        backend.put_bytes(key, b"x")

    failed = backend.storage.delete_many(keys[:3] + [key_for("never-existed.pdf")])
    assert failed == []
    assert [backend.storage.exists(k) for k in keys] == [False, False, False, True, True]
    assert backend.storage.delete_many([]) == []


def test_delete_missing_key_is_fine(backend):
    key = key_for("gone.pdf")
    backend.storage.delete(key)
    backend.put_bytes(key, b"x")
    backend.storage.delete(key)
    backend.storage.delete(key)
    assert not backend.storage.exists(key)


# -- links -------------------------------------------------------------------------------------

def test_signed_link_downloads_as_attachment(backend):
    data = os.urandom(3 * MB)
    key = key_for("evidence.pdf")
    backend.put_bytes(key, data)

    link = backend.storage.signed_url(key, filename="Résumé \"final\".pdf")
    response = backend.get(link.url)
    assert response.status_code == 200
    assert response.content == data
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment")
    assert 'filename="Resume _final_.pdf"' in disposition
    # The same cleaner as at upload (core/platform/filenames.py): quotes become "_" in both forms.
    assert "filename*=UTF-8''R%C3%A9sum%C3%A9%20_final_.pdf" in disposition
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Cache-Control"] == "private, no-store"  # MinIO sets it from the signed link
    if backend.kind == "local":
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
        assert response.headers["Cache-Control"] == "private, no-store"
        head = requests.head(backend.base_url + link.url, timeout=10)
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))


def test_ttl_is_clamped_to_an_hour(backend):
    key = key_for("ttl.pdf")
    backend.put_bytes(key, b"x")
    before = datetime.now(timezone.utc)
    link = backend.storage.signed_url(key, ttl=7200, filename="ttl.pdf")
    after = datetime.now(timezone.utc)

    assert link.ttl == 3600
    assert before + timedelta(seconds=3600) - timedelta(seconds=1) <= link.expires_at <= after + timedelta(seconds=3600)
    query = parse_qs(urlsplit(link.url).query)
    if backend.kind == "minio":
        assert int(query["X-Amz-Expires"][0]) <= 3600
        assert query["response-content-disposition"][0].startswith("attachment")
        assert query["response-content-type"] == ["application/octet-stream"]
    else:
        assert int(query["exp"][0]) <= after.timestamp() + 3600
    assert backend.storage.signed_url(key, ttl=0).ttl == 1  # never zero or negative
    assert backend.storage.signed_url(key).ttl == 3600  # the default, SIGNED_URL_TTL_SECONDS


def test_signed_urls_gives_one_link_per_key(backend):
    items = []
    for n in range(3):
        key = key_for(f"{n}.pdf")
        backend.put_bytes(key, f"body {n}".encode())
        items.append((key, f"file-{n}.pdf"))

    links = backend.storage.signed_urls(items, ttl=120)
    assert [link.key for link in links] == [key for key, _ in items]
    assert len({link.url for link in links}) == 3
    for n, link in enumerate(links):
        assert link.ttl == 120
        response = backend.get(link.url)
        assert response.content == f"body {n}".encode()
        assert f'filename="file-{n}.pdf"' in response.headers["Content-Disposition"]


# -- failures ----------------------------------------------------------------------------------

def test_unreachable_backend_raises_storage_error(dead_storage):
    for action in (dead_storage.check, lambda: dead_storage.put("evidence/u1/A/x.pdf", io.BytesIO(b"abc"), 3)):
        with pytest.raises(StorageError) as info:
            action()
        assert info.value.code == "storage_unavailable" and info.value.status == 503


# -- local links, end to end (the app verifies them) ------------------------------------------

def _error(response: requests.Response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"type", "code", "message", "details"}
    return response.status_code, body["type"], body["code"]


@pytest.fixture
def local(app, live_server) -> Backend:
    return Backend("local", app.extensions["points"].storage, live_server)


def test_local_link_expires(local):
    key = key_for("soon.pdf")
    local.put_bytes(key, b"x")
    link = local.storage.signed_url(key, ttl=1)
    time.sleep(2.2)
    assert _error(local.get(link.url)) == (403, "auth_error", "link_expired")

    # Issued two hours ago for an hour: long dead, without waiting.
    old = local.storage.signed_url(key, ttl=3600, _now=datetime.now(timezone.utc) - timedelta(hours=2))
    assert _error(local.get(old.url)) == (403, "auth_error", "link_expired")


@pytest.mark.parametrize("field", ["sig", "key", "exp", "fn"])
def test_local_link_tampering_is_refused(local, field):
    key, other = key_for("mine.pdf"), key_for("theirs.pdf")
    local.put_bytes(key, b"mine")
    local.put_bytes(other, b"theirs")
    query = {k: v[0] for k, v in parse_qs(urlsplit(local.storage.signed_url(key, ttl=60).url).query).items()}
    query[field] = {"sig": "0" * 64, "key": other, "exp": str(int(query["exp"]) + 86400), "fn": "x.html"}[field]

    response = local.get(f"/api/storage/local?{urlencode(query)}")
    assert _error(response) == (403, "auth_error", "link_invalid")
    assert local.get("/api/storage/local").status_code == 403  # no parameters at all


def test_local_link_route_is_404_when_storage_is_minio(make_app, s3_endpoint, tmp_path):
    from tests.conftest import serve

    app = make_app(**minio_env(s3_endpoint))
    signer = LocalStorage(app.extensions["points"].settings.replace(local_storage_root=str(tmp_path)))
    link = signer.signed_url("evidence/u1/A/x.pdf", ttl=60)  # validly signed with the app's key
    with serve(app) as base:
        assert _error(requests.get(base + link.url, timeout=10)) == (404, "not_found", "not_found")


# -- minio specifics ---------------------------------------------------------------------------

def test_minio_ensure_ready_makes_a_private_bucket(make_settings, s3_endpoint):
    env = minio_env(s3_endpoint)
    storage = build_storage(make_settings(**env))
    with pytest.raises(StorageError):
        storage.check()  # no bucket yet: not ready
    storage.ensure_ready()
    storage.check()
    storage.ensure_ready()  # idempotent

    key = key_for("private.pdf")
    storage.put(key, io.BytesIO(b"secret"), 6)
    anonymous = requests.get(f"http://{s3_endpoint['endpoint']}/{env['MINIO_BUCKET']}/{key}", timeout=10)
    assert anonymous.status_code == 403
    assert b"secret" not in anonymous.content
    assert requests.get(storage.signed_url(key).url, timeout=10).content == b"secret"


def test_minio_ensure_ready_removes_a_public_policy(make_settings, s3_endpoint):
    env = minio_env(s3_endpoint)
    storage = build_storage(make_settings(**env))
    storage.ensure_ready()
    bucket = env["MINIO_BUCKET"]
    public = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},'
              f'"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::{bucket}/*"]}}]}}')
    storage.client.set_bucket_policy(bucket, public)  # an operator's mistake, e.g. `mc anonymous set download`
    storage.ensure_ready()
    with pytest.raises(S3Error) as info:
        storage.client.get_bucket_policy(bucket)
    assert info.value.code == "NoSuchBucketPolicy"


# -- shared pieces -----------------------------------------------------------------------------

def test_registry_and_lazy_sdk_import():
    assert set(BACKENDS) == {"local", "minio"}
    assert BACKENDS["local"] is LocalStorage
    assert BACKENDS["minio"].__module__ == "core.storage.minio"
    code = "import sys, core.storage, api.local_links; print('minio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name, ascii_part, utf8_part", [
    ("report.pdf", 'filename="report.pdf"', "filename*=UTF-8''report.pdf"),
    ("a\r\nSet-Cookie: x=1.pdf", 'filename="a Set-Cookie_ x_1.pdf"', "filename*=UTF-8''a%20Set-Cookie_%20x%3D1.pdf"),
    ("../../etc/passwd", 'filename="passwd"', "filename*=UTF-8''passwd"),
    ("日本.pdf", 'filename="download.pdf"', "filename*=UTF-8''%E6%97%A5%E6%9C%AC.pdf"),
    ("", 'filename="download"', "filename*=UTF-8''download"),
])
def test_content_disposition_is_always_a_safe_attachment(name, ascii_part, utf8_part):
    header = content_disposition(name)
    assert header.startswith("attachment; ")
    assert ascii_part in header and utf8_part in header
    assert "\r" not in header and "\n" not in header


def test_list_is_in_key_order_and_pages_with_start_after(backend):
    # "a-b" sorts before "a/..." (S3's byte order), which a directory walk would get wrong.
    keys = ["evidence/u1/a-b.pdf", "evidence/u1/a/x.pdf", "evidence/u1/a/y.pdf", "evidence/u1/b.pdf",
            "evidence/u2/c.pdf", "thumbnails/u1/d.jpg"]
    for key in reversed(keys):
        backend.put_bytes(key, b"data")
    assert [i.key for i in backend.storage.list("evidence/")] == keys[:5]
    pages, cursor = [], None
    while True:
        page = [i.key for _, i in zip(range(2), backend.storage.list("", start_after=cursor))]
        if not page:
            break
        pages.append(page)
        cursor = page[-1]
    assert pages == [keys[0:2], keys[2:4], keys[4:6]]  # every key once, in order, across pages
    assert [i.key for i in backend.storage.list("evidence/u1/", start_after="evidence/u1/a/x.pdf")] == keys[2:4]
