"""A PostgreSQL cluster of the test's own (initdb / pg_ctl from /usr/lib/postgresql/*/bin), on a
free port with its socket and data in a temp dir, so a test can stop and start it for real. Never
the machine's shared cluster on 5432. initdb refuses to run as root, so as root the cluster runs
as the `postgres` user.

    with own_postgres(tmp_path) as pg:   # or the `own_postgres_cluster` fixture
        pg.url; pg.stop(); pg.start()
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.services.ports import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"{name} not found under /usr/lib/postgresql/*/bin (Debian's postgresql package)", pytrace=False)
    return found[-1]


@dataclass
class PostgresCluster:
    workdir: str
    port: int

    @property
    def datadir(self) -> str:
        return os.path.join(self.workdir, "data")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/points"

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:  # initdb and postgres refuse root
            command = ["runuser", "-u", "postgres", "--", *command]
        out = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            pytest.fail(f"{' '.join(args[:2])} failed: {out.stderr.strip() or out.stdout.strip()}", pytrace=False)

    def init(self) -> None:
        os.makedirs(self.datadir)
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.workdir, postgres.pw_uid, postgres.pw_gid)
            os.chown(self.datadir, postgres.pw_uid, postgres.pw_gid)
        self._run(_bin("initdb"), "-D", self.datadir, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        self.start()
        self._run(_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "points")

    def start(self) -> None:
        self._run(_bin("pg_ctl"), "-D", self.datadir, "-w", "-t", "60", "-l", os.path.join(self.workdir, "pg.log"),
                  "-o", f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as in an outage or a failover."""
        self._run(_bin("pg_ctl"), "-D", self.datadir, "-w", "-t", "60", "-m", "fast", "stop")

    def running(self) -> bool:
        return os.path.exists(os.path.join(self.datadir, "postmaster.pid"))


@contextlib.contextmanager
def own_postgres() -> Iterator[PostgresCluster]:
    workdir = tempfile.mkdtemp(prefix="pg-test-")
    cluster = PostgresCluster(workdir, free_port())
    try:
        cluster.init()
        yield cluster
    finally:
        if cluster.running():
            with contextlib.suppress(BaseException):
                cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def own_postgres_cluster() -> Iterator[PostgresCluster]:
    with own_postgres() as cluster:
        yield cluster
