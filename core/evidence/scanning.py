"""Virus scanning behind one small protocol. Every failure fails closed: a file is only ever
"clean" because a scanner said so; a scanner that cannot answer raises ScannerUnavailable and the
file stays pending."""
from __future__ import annotations

import socket
import struct
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol
from urllib.parse import unquote, urlparse

from core.platform.errors import ScannerUnavailable

if TYPE_CHECKING:
    from core.platform.settings import Settings

with warnings.catch_warnings():
    # clamd 1.0.2 reads its own version via pkg_resources in a bare except; newer setuptools
    # warns that pkg_resources is deprecated. Harmless, so silenced for this import only.
    warnings.filterwarnings("ignore", message=r".*pkg_resources.*")
    import clamd

ScanState = Literal["clean", "infected", "unscanned"]

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE = "Eicar-Test-Signature"
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class ScanResult:
    state: ScanState
    signature: str | None = None

    @property
    def is_clean(self) -> bool:
        return self.state == "clean"


class Scanner(Protocol):
    def scan(self, stream: BinaryIO) -> ScanResult:
        """Scan from the stream's current position to its end."""
        ...

    def check(self) -> None:
        """Return if the scanner can answer now; raise ScannerUnavailable if not (for /readyz)."""
        ...


class EicarScanner:
    """The built-in heuristic for development: finds the EICAR test string anywhere."""

    name = "eicar"

    def __init__(self, chunk_size: int = CHUNK_BYTES) -> None:
        if chunk_size < len(EICAR):
            raise ValueError(f"chunk_size must be at least {len(EICAR)} bytes")
        self.chunk_size = chunk_size

    def scan(self, stream: BinaryIO) -> ScanResult:
        # Keep the last len(EICAR)-1 bytes of each chunk so a match split across two is found.
        tail = b""
        keep = len(EICAR) - 1
        while chunk := stream.read(self.chunk_size):
            window = tail + chunk
            if EICAR in window:
                return ScanResult("infected", EICAR_SIGNATURE)
            tail = window[-keep:]
        return ScanResult("clean")

    def check(self) -> None:
        return None


class DisabledScanner:
    """AV_SCAN_ENABLED=false: files are marked unscanned (a warning for reviewers), never clean."""

    name = "disabled"

    def scan(self, stream: BinaryIO) -> ScanResult:
        return ScanResult("unscanned")

    def check(self) -> None:
        return None


class _TimedConnect:
    """clamd 1.0.2 sets the socket timeout only after connect(), so a dead host could hang the
    worker; and its INSTREAM uses send(), which may write part of a frame and corrupt the stream.
    This mix-in sets the timeout first and frames each chunk with sendall()."""

    timeout: float | None
    clamd_socket: socket.socket

    def _connect(self, family: int, address: object) -> None:
        self.clamd_socket = socket.socket(family, socket.SOCK_STREAM)
        self.clamd_socket.settimeout(self.timeout)
        try:
            self.clamd_socket.connect(address)
        except OSError as exc:
            self.clamd_socket.close()
            raise clamd.ConnectionError(f"cannot connect to clamd at {address}: {exc}") from exc

    def instream(self, buff: BinaryIO, chunk_size: int = CHUNK_BYTES) -> dict:
        try:
            self._init_socket()  # type: ignore[attr-defined]
            self._send_command("INSTREAM")  # type: ignore[attr-defined]
            # Memory stays at one chunk whatever the file's size.
            while chunk := buff.read(chunk_size):
                self.clamd_socket.sendall(struct.pack("!L", len(chunk)) + chunk)
            self.clamd_socket.sendall(struct.pack("!L", 0))
            result = self._recv_response()  # type: ignore[attr-defined]
            if result == "INSTREAM size limit exceeded. ERROR":
                raise clamd.BufferTooLongError(result)
            filename, reason, status = self._parse_response(result)  # type: ignore[attr-defined]
            return {filename: (status, reason)}
        finally:
            self.clamd_socket.close()


class _NetworkClamd(_TimedConnect, clamd.ClamdNetworkSocket):
    def _init_socket(self) -> None:
        self._connect(socket.AF_INET, (self.host, self.port))


class _UnixClamd(_TimedConnect, clamd.ClamdUnixSocket):
    def _init_socket(self) -> None:
        self._connect(socket.AF_UNIX, self.unix_socket)


def _client_for(url: str, timeout: float) -> clamd.ClamdNetworkSocket:
    parsed = urlparse(url)
    if parsed.scheme == "tcp":
        if not parsed.hostname:
            raise ValueError("a tcp:// URL needs a host")
        return _NetworkClamd(parsed.hostname, parsed.port or 3310, timeout)
    if parsed.scheme == "unix":
        path = unquote(parsed.path)
        if not path:
            raise ValueError("a unix:// URL needs a socket path")
        return _UnixClamd(path, timeout)
    raise ValueError("must start with tcp:// or unix://")


# What the clamd package raises, plus the socket layer it lets through (e.g. a reset mid-stream).
_CLAMD_FAILURES = (clamd.ClamdError, OSError, socket.timeout, UnicodeDecodeError)


class ClamdScanner:
    """Scans through a clamd daemon with INSTREAM, a connection per call (safe across forks)."""

    name = "clamd"

    def __init__(self, url: str, timeout: float = 30) -> None:
        self.url = url
        self.timeout = timeout
        try:
            self._client: clamd.ClamdNetworkSocket | None = _client_for(url, timeout)
            self._url_problem = ""
        except ValueError as exc:
            # Kept, not raised: /readyz and the scan job report it as the scanner being unavailable.
            self._client, self._url_problem = None, f"CLAMD_URL {url!r} is not usable: {exc}"

    def _require_client(self) -> clamd.ClamdNetworkSocket:
        if self._client is None:
            raise ScannerUnavailable(self._url_problem)
        return self._client

    def check(self) -> None:
        client = self._require_client()
        try:
            reply = client.ping()
        except _CLAMD_FAILURES as exc:
            raise ScannerUnavailable(f"the virus scanner at {self.url} cannot be reached: {exc}") from exc
        if reply != "PONG":
            raise ScannerUnavailable(f"the virus scanner at {self.url} answered {reply!r} to PING")

    def scan(self, stream: BinaryIO) -> ScanResult:
        client = self._require_client()
        try:
            reply = client.instream(stream)
        except clamd.BufferTooLongError as exc:
            raise ScannerUnavailable(
                f"the file is larger than the virus scanner accepts (raise clamd's StreamMaxLength): {exc}"
            ) from exc
        except _CLAMD_FAILURES as exc:
            raise ScannerUnavailable(f"the virus scanner at {self.url} failed: {exc}") from exc
        if not reply:
            raise ScannerUnavailable(f"the virus scanner at {self.url} gave no answer")
        status, signature = next(iter(reply.values()))
        if status == "OK":
            return ScanResult("clean")
        if status == "FOUND":
            return ScanResult("infected", signature or "unknown")
        # "ERROR" or anything unexpected: never read it as clean.
        raise ScannerUnavailable(f"the virus scanner at {self.url} reported an error: {signature or status}")


def build_scanner(settings: "Settings") -> Scanner:
    """The scanner the settings ask for; built once in create_app and held on the app."""
    if not settings.av_scan_enabled:
        return DisabledScanner()
    if settings.av_scanner == "clamd":
        return ClamdScanner(settings.clamd_url, settings.clamd_timeout_seconds)
    return EicarScanner()


def scan_file_buffer(scanner: Scanner, stream: BinaryIO) -> ScanResult:
    """The playbook's hook: scan the whole buffer and leave it rewound for whoever reads next."""
    stream.seek(0)
    try:
        return scanner.scan(stream)
    finally:
        stream.seek(0)
