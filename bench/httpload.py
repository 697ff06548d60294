"""A light HTTP/1.1 load client: N keep-alive connections on one asyncio loop, each posting
pre-built requests back to back. On a 2-core box shared with the app, the `requests` library
spent about a third of a core per 200 requests/s; this spends a few percent, so the benchmark
measures the app rather than the client."""
from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit


def build_post(url: str, body: bytes, content_type: str = "application/json") -> bytes:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, server keeps the connection open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    if length:
        await reader.readexactly(length)
    return status, keep


async def _run(host: str, port: int, requests: list[bytes], concurrency: int) -> list[int]:
    statuses = [0] * len(requests)
    next_index = iter(range(len(requests)))

    async def connection() -> None:
        reader = writer = None
        for i in next_index:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(requests[i])
            statuses[i], keep = await _read_response(reader)
            if not keep:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return statuses


def post_all(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[int]]:
    """Posts every body to `url` over `concurrency` connections; returns (seconds, statuses)."""
    parts = urlsplit(url)
    requests = [build_post(url, body) for body in bodies]
    started = time.perf_counter()
    statuses = asyncio.run(_run(parts.hostname, parts.port or 80, requests, concurrency))
    return time.perf_counter() - started, statuses
