"""MINIO_PUBLIC_URL: links are signed for the host browsers use, while the app keeps talking to
MINIO_ENDPOINT. moto's server (tests/services/s3server.py) answers on 127.0.0.1 under any host
name, so `localhost:PORT` stands in for the public name of the same store."""
from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from core.platform.settings import Settings, SettingsError
from core.storage import build_storage

from tests.services.ports import free_port
from tests.test_storage_contract import minio_env


def test_links_name_the_public_host_and_download_through_it(make_settings, s3_endpoint):
    port = s3_endpoint["endpoint"].rsplit(":", 1)[1]
    storage = build_storage(make_settings(**minio_env(s3_endpoint), MINIO_PUBLIC_URL=f"http://localhost:{port}/"))
    storage.ensure_ready()
    storage.put("evidence/1/EXPLORE/a.pdf", io.BytesIO(b"%PDF-1.7 public"), 15, "application/pdf")

    link = storage.signed_url("evidence/1/EXPLORE/a.pdf", ttl=60, filename="a.pdf")
    parts = urlsplit(link.url)
    assert (parts.scheme, parts.netloc) == ("http", f"localhost:{port}")
    assert parse_qs(parts.query)["X-Amz-SignedHeaders"] == ["host"]  # the signature covers that host
    response = requests.get(link.url, timeout=10)
    assert response.status_code == 200 and response.content == b"%PDF-1.7 public"
    assert response.headers["Content-Disposition"].startswith("attachment;")


def test_the_app_keeps_the_internal_endpoint(make_settings, s3_endpoint):
    # The public address answers nothing here: storing, reading and signing still work, so the
    # app never sends its own traffic there and signing makes no network call.
    dead = free_port()
    storage = build_storage(make_settings(**minio_env(s3_endpoint), MINIO_PUBLIC_URL=f"https://files.example.org:{dead}"))
    storage.ensure_ready()
    storage.check()
    storage.put("evidence/1/EXPLORE/b.pdf", io.BytesIO(b"inside"), 6, "application/pdf")
    assert b"".join(storage.iter_chunks("evidence/1/EXPLORE/b.pdf")) == b"inside"
    link = storage.signed_url("evidence/1/EXPLORE/b.pdf")
    assert link.url.startswith(f"https://files.example.org:{dead}/")


def test_without_a_public_url_links_use_the_endpoint(make_settings, s3_endpoint):
    storage = build_storage(make_settings(**minio_env(s3_endpoint)))
    storage.ensure_ready()
    assert urlsplit(storage.signed_url("evidence/1/EXPLORE/c.pdf").url).netloc == s3_endpoint["endpoint"]


@pytest.mark.parametrize("raw", ["minio.example.org", "ftp://minio.example.org", "https://minio.example.org/bucket",
                                 "https://user:pw@minio.example.org", "https://minio.example.org?x=1",
                                 "http://minio.example.org:99999", "http://:9000"])
def test_a_bad_public_url_stops_start_up_with_its_name(raw):
    with pytest.raises(SettingsError, match="MINIO_PUBLIC_URL"):
        Settings.from_env({"MINIO_PUBLIC_URL": raw})


def test_a_good_public_url_is_kept_without_its_trailing_slash():
    assert Settings.from_env({"MINIO_PUBLIC_URL": "https://files.example.org/"}).minio_public_url == "https://files.example.org"
