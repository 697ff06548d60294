"""pytest plugin: a real clamd on a free local port with a signature database made at test time.

There is no network for freshclam here, so the database holds two MD5 signatures built by
sigtool (the 68-byte EICAR test file and ClamAV's own harmless clam.exe test binary) and one body
signature for the EICAR string anywhere in a file. ScanArchive is on, so the same signatures also
match inside zip files and PDFs. The limits and alerts are deploy/clamd.conf's.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.services.ports import free_port

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
CLAM_EXE = Path("/usr/share/clamav-testfiles/clam.exe")
# clamd reports these with ".UNOFFICIAL" appended, since the database is not ClamAV's own.
SIGNATURES = {"eicar.com": "Eicar-Test-Signature", "clam.exe": "ClamAV-Test-File"}
START_TIMEOUT_S = 30.0
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/usr/local/sbin"])
_INSTALL_HINT = "install the Debian packages clamav, clamav-daemon and clamav-testfiles (the Makefile's test target does)"


def _binary(name: str) -> str:
    found = shutil.which(name, path=_SEARCH_PATH)
    if not found:
        pytest.fail(f"`{name}` was not found on PATH or in /usr/sbin: {_INSTALL_HINT}", pytrace=False)
    return found


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"nPING\n")
            return sock.recv(16).strip() == b"PONG"
    except OSError:
        return False


def build_database(sigtool: str, db_dir: Path, work: Path) -> Path:
    """Write test.hdb with one MD5 signature per sample, renamed to a readable signature name."""
    if not CLAM_EXE.is_file():
        pytest.fail(f"{CLAM_EXE} is missing: {_INSTALL_HINT}", pytrace=False)
    samples = work / "samples"
    samples.mkdir()
    (samples / "eicar.com").write_bytes(EICAR)
    shutil.copyfile(CLAM_EXE, samples / "clam.exe")
    lines = []
    for name, signature in SIGNATURES.items():
        out = subprocess.run([sigtool, "--md5", str(samples / name)], capture_output=True, text=True, check=False)
        if out.returncode != 0 or out.stdout.count(":") < 2:
            pytest.fail(f"sigtool --md5 {name} failed: {out.stderr.strip() or out.stdout.strip()}", pytrace=False)
        md5, size, _ = out.stdout.strip().split(":", 2)  # "md5:size:filename"
        lines.append(f"{md5}:{size}:{signature}\n")
    hdb = db_dir / "test.hdb"
    hdb.write_text("".join(lines))
    (db_dir / "test.ndb").write_text(EICAR_BODY_SIGNATURE)
    return hdb


# The same limits and alerts as deploy/clamd.conf (tests/test_clamd_limits.py checks they agree),
# so a file the tests see refused is one production refuses.
LIMITS = [
    # Above MAX_UPLOAD_MB (25) with room: a larger stream is refused ("INSTREAM size limit
    # exceeded"), and the file marked unscannable, never scanned in part.
    "StreamMaxLength 64M",
    # Largest single file clamd reads, the upload itself or anything unpacked from it (a PDF's
    # embedded file, a zip member). Past it the verdict is Heuristics.Limits.Exceeded.MaxFileSize.
    "MaxFileSize 100M",
    # Total bytes read per scan, everything unpacked included.
    "MaxScanSize 400M",
    # Nesting depth (a zip in a zip...) and number of files unpacked from one upload.
    "MaxRecursion 16",
    "MaxFiles 10000",
    # Whatever lies past a limit above is reported, not silently skipped: without this clamd
    # answers OK for what it did not read (ClamAV's default is no).
    "AlertExceedsMax yes",
    # Password-protected archives and PDFs cannot be read, so they cannot be called clean.
    "AlertEncrypted yes",
    # Evidence is documents and pictures: a broken program inside one is suspect.
    "AlertBrokenExecutables yes",
    # Office macros are the classic way documents carry malware.
    "AlertOLE2Macros yes",
    # Disk images whose partitions overlap are built to hide data from scanners.
    "AlertPartitionIntersection yes",
]
# A body signature for EICAR anywhere in a file (the .hdb signatures match whole files only), so
# EICAR unpacked from a PDF's embedded file is found. Same name as the hash signature.
EICAR_BODY_SIGNATURE = f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n"


@dataclass
class ClamdServer:
    binary: str
    workdir: Path
    port: int
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> Path:
        """clamd's unix socket (LocalSocket), where FILDES works; the TCP port serves INSTREAM."""
        return self.workdir / "clamd.sock"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def config(self) -> Path:
        return self.workdir / "clamd.conf"

    @property
    def log(self) -> Path:
        return self.workdir / "clamd.log"

    def write_config(self) -> None:
        self.config.write_text(
            "\n".join([
                "Foreground yes",
                f"TCPSocket {self.port}",
                "TCPAddr 127.0.0.1",
                f"LocalSocket {self.socket_path}",
                "LocalSocketMode 600",
                f"DatabaseDirectory {self.workdir / 'db'}",
                f"TemporaryDirectory {self.workdir / 'tmp'}",
                f"LogFile {self.log}",
                "LogTime yes",
                f"PidFile {self.workdir / 'clamd.pid'}",
                *LIMITS,
                "ScanArchive yes",
                # No "User": run as whoever runs the tests, so the temp dirs stay readable.
                "",
            ])
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no clamd log)"

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start (or restart) on the same port; return once clamd answers PING."""
        if self.is_running():
            return
        with open(self.workdir / "clamd.stdout", "ab") as out:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"clamd exited with code {self.process.returncode} at start-up:\n{self.log_tail()}",
                            pytrace=False)
            if _ping(self.port) and self.socket_path.exists():
                return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"clamd did not answer PING within {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}", pytrace=False)

    def stop(self) -> None:
        """Stop clamd and wait until the port no longer answers."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def clamd_server() -> Iterator[ClamdServer]:
    clamd_bin = _binary("clamd")
    sigtool = _binary("sigtool")
    workdir = Path(tempfile.mkdtemp(prefix="clamd-test-"))
    try:
        for sub in ("db", "tmp"):
            (workdir / sub).mkdir()
        build_database(sigtool, workdir / "db", workdir)
        server = ClamdServer(binary=clamd_bin, workdir=workdir, port=free_port())
        server.write_config()
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
