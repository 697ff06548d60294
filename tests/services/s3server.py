"""pytest plugin: an S3-compatible endpoint for the MinIO storage backend, one per test session.

It runs moto's server mode (`moto.server.ThreadedMotoServer`) in a thread on a free 127.0.0.1
port. MinIO's own server cannot be installed here, and s3rver (npm) serves anonymous reads, so
moto is the most faithful option. What moto does and does not check:

- It does: real HTTP with the S3 wire format (XML bodies, multipart uploads, ranged GETs,
  DeleteObjects, ListObjectsV2, bucket policies), the response-content-disposition /
  response-content-type overrides on GET, and it refuses anonymous (unsigned) requests to a
  private bucket with 403.
- It does not: verify SigV4 signatures (wrong credentials are accepted), or enforce a presigned
  link's expiry (X-Amz-Expires is ignored).

So the contract tests assert what a MinIO link carries (X-Amz-Expires <= 3600, the disposition
override in the query) and that it downloads; expiry and tampering are checked end to end on
the local backend, whose links the app verifies itself.

Use it with `pytest_plugins = ["tests.services.s3server"]` and the fixture `s3_endpoint`.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key-0123456789"
REGION = "us-east-1"


def _wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"S3 test server did not start on {host}:{port}") from None
            time.sleep(0.05)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[dict]:
    """{"endpoint": "127.0.0.1:PORT", "access_key", "secret_key", "region"} of a running S3 server."""
    from moto.server import ThreadedMotoServer

    # port=0: the OS picks a free port at bind time, so there is no probe-then-bind race.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        _wait_for_port(host, port)
        yield {"endpoint": f"{host}:{port}", "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "region": REGION}
    finally:
        server.stop()
