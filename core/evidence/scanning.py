"""Virus scanning behind one small protocol. Every failure fails closed: a file is only ever
"clean" because a scanner said so; a scanner that stopped at its own limits or refused the file
says `unscannable` (never served); a scanner that cannot answer raises ScannerUnavailable and the
file stays pending."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol

from core.evidence.clamd_client import ClamdConnection, ScannerFailure

if TYPE_CHECKING:
    from core.platform.settings import Settings

ScanState = Literal["clean", "infected", "unscannable", "unscanned"]

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE = "Eicar-Test-Signature"
CHUNK_BYTES = 64 * 1024


# Why a file is unscannable -> what its uploader is told to do (plain words, no jargon).
UNSCANNABLE_REASONS = {
    "limits_exceeded": "it holds more than our virus scanner can check (for example a large attachment "
                       "inside the document). Send the document without attachments, or split it into "
                       "smaller files",
    "encrypted": "it is protected with a password, so our virus scanner cannot read it. "
                 "Send a copy without a password",
    "stream_too_long": "it is larger than our virus scanner accepts. Split it into smaller files",
}


def unscannable_advice(reason: str | None) -> str:
    """What the uploader should do about a file the scanner could not fully check."""
    return UNSCANNABLE_REASONS.get(reason or "", UNSCANNABLE_REASONS["limits_exceeded"])


@dataclass(frozen=True)
class ScanResult:
    """state; the signature or heuristic name the scanner gave; for `unscannable`, the reason
    code (a key of UNSCANNABLE_REASONS)."""
    state: ScanState
    signature: str | None = None
    reason: str | None = None

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


class ClamdScanner:
    """Scans through a clamd daemon with INSTREAM, or FILDES on a unix socket, a connection per
    call (safe across forks).
    Every answer clamd can give is classified in core/evidence/clamd_client.py."""

    name = "clamd"

    def __init__(self, url: str, timeout: float = 30) -> None:
        self.url = url
        self.timeout = timeout
        try:
            self._conn: ClamdConnection | None = ClamdConnection(url, timeout)
            self._url_problem = ""
        except ValueError as exc:
            # Kept, not raised: /readyz and the scan job report it as the scanner being unavailable.
            self._conn, self._url_problem = None, f"CLAMD_URL {url!r} is not usable: {exc}"

    def _require_conn(self) -> ClamdConnection:
        if self._conn is None:
            raise ScannerFailure("unreachable", self._url_problem)
        return self._conn

    def check(self) -> None:
        reply = self._require_conn().command("PING")
        if reply != "PONG":
            raise ScannerFailure("protocol", f"the virus scanner at {self.url} answered {reply!r} to PING")

    def stream_limit_warning(self, max_upload_bytes: int) -> str | None:
        """A sentence for /readyz when clamd would refuse a file of MAX_UPLOAD_MB (its
        StreamMaxLength is lower), else None. Raises ScannerFailure if clamd cannot be asked."""
        if not self._require_conn().stream_limit_below(max_upload_bytes):
            return None
        return (f"clamd's StreamMaxLength is below MAX_UPLOAD_MB ({max_upload_bytes // (1024 * 1024)} MB): "
                f"large uploads will be refused by the scanner and marked unscannable; raise StreamMaxLength")

    def scan(self, stream: BinaryIO) -> ScanResult:
        verdict = self._require_conn().scan(stream)
        return ScanResult(verdict.state, verdict.name, verdict.reason)  # type: ignore[arg-type]


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
