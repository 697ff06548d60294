"""A Redis of the test's own, on a free loopback port, without persistence: stopping it loses
everything, as a Redis without persistence (or a failover to an empty replica) does. Tests that
stop, restart or flush Redis use this one, never the machine's shared Redis on 6379.

    with own_redis(tmp_path) as server:   # or the `own_redis_server` fixture
        server.url; server.stop(); server.start()
"""
from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis import Redis

from tests.services.ports import free_port

START_TIMEOUT_S = 15.0


@dataclass
class RedisServer:
    workdir: Path
    port: int
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start (or start again, empty) on the same port; return once it answers PING."""
        if self.is_running():
            return
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - the child keeps its own copy
        with log:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.workdir), "--protected-mode", "no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited with {self.process.returncode} at start-up", pytrace=False)
            with contextlib.suppress(Exception):
                if self.client().ping():
                    return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"redis-server did not answer PING within {START_TIMEOUT_S:.0f} s", pytrace=False)

    def stop(self) -> None:
        """Stop it hard (SIGKILL): whatever it held is gone."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(timeout=10)

    def restart_empty(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def own_redis(workdir: Path) -> Iterator[RedisServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = RedisServer(workdir=workdir, port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis_server(tmp_path) -> Iterator[RedisServer]:
    with own_redis(tmp_path / "redis") as server:
        yield server
