"""Scanning against a real clamd (tests/services/clamd.py) and the built-in EICAR heuristic."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from core.platform.errors import ScannerUnavailable
from core.evidence.scanning import (
    EICAR,
    ClamdScanner,
    DisabledScanner,
    EicarScanner,
    ScanResult,
    build_scanner,
    scan_file_buffer,
)
from core.platform.settings import Settings

from tests.services.ports import free_port

CLAM_EXE = Path("/usr/share/clamav-testfiles/clam.exe")
CLEAN_PDF = (
    b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
    b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
)


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)
    return out.getvalue()


@pytest.fixture
def clamd_scanner(clamd_server) -> ClamdScanner:
    clamd_server.start()  # no-op when running; heals a server an earlier failure left stopped
    return ClamdScanner(clamd_server.url, timeout=10)


# -- clamd -------------------------------------------------------------------------------------

def test_clamd_answers_ping(clamd_scanner: ClamdScanner) -> None:
    clamd_scanner.check()


def test_clamd_finds_eicar(clamd_scanner: ClamdScanner) -> None:
    result = scan_file_buffer(clamd_scanner, io.BytesIO(EICAR))
    assert result.state == "infected"
    assert result.signature and "Eicar" in result.signature


def test_clamd_finds_eicar_inside_a_zip(clamd_scanner: ClamdScanner) -> None:
    result = scan_file_buffer(clamd_scanner, io.BytesIO(zipped("readme.txt", EICAR)))
    assert result.state == "infected"
    assert "Eicar" in (result.signature or "")


def test_clamd_finds_the_clamav_test_binary(clamd_scanner: ClamdScanner) -> None:
    with CLAM_EXE.open("rb") as fh:
        result = scan_file_buffer(clamd_scanner, fh)
    assert result == ScanResult("infected", "ClamAV-Test-File.UNOFFICIAL")


def test_clamd_passes_a_clean_pdf(clamd_scanner: ClamdScanner) -> None:
    assert scan_file_buffer(clamd_scanner, io.BytesIO(CLEAN_PDF)) == ScanResult("clean", None)


def test_clamd_streams_a_large_file_in_chunks(clamd_scanner: ClamdScanner) -> None:
    # 3 MiB: about fifty INSTREAM chunks, one verdict.
    big = io.BytesIO(b"\0" * (3 * 1024 * 1024))
    assert scan_file_buffer(clamd_scanner, big).state == "clean"
    assert big.tell() == 0  # the hook leaves the buffer rewound


def test_clamd_stopped_fails_closed_then_recovers(clamd_server) -> None:
    clamd_server.start()
    scanner = ClamdScanner(clamd_server.url, timeout=5)
    assert scan_file_buffer(scanner, io.BytesIO(CLEAN_PDF)).state == "clean"
    clamd_server.stop()
    try:
        with pytest.raises(ScannerUnavailable) as info:
            scan_file_buffer(scanner, io.BytesIO(CLEAN_PDF))
        assert info.value.code == "scanner_unavailable"
        assert info.value.status == 503
        with pytest.raises(ScannerUnavailable):
            scanner.check()
    finally:
        clamd_server.start()
    scanner.check()
    assert scan_file_buffer(scanner, io.BytesIO(CLEAN_PDF)).state == "clean"
    assert scan_file_buffer(scanner, io.BytesIO(EICAR)).state == "infected"


@pytest.mark.parametrize(
    "url",
    [
        "tcp://127.0.0.1:{closed}",
        "unix:///nonexistent/clamd.ctl",
        "http://127.0.0.1:3310",
        "tcp://",
    ],
)
def test_bad_clamd_url_is_unavailable_never_clean(url: str) -> None:
    scanner = ClamdScanner(url.format(closed=free_port()), timeout=2)
    with pytest.raises(ScannerUnavailable):
        scanner.check()
    with pytest.raises(ScannerUnavailable):
        scanner.scan(io.BytesIO(CLEAN_PDF))


def test_unroutable_host_times_out_as_unavailable() -> None:
    # 192.0.2.0/24 is TEST-NET-1: connect either fails fast or hangs; the timeout bounds it.
    scanner = ClamdScanner("tcp://192.0.2.1:3310", timeout=1)
    with pytest.raises(ScannerUnavailable):
        scanner.check()


# -- built-in heuristic and switches -----------------------------------------------------------

def test_eicar_scanner_finds_eicar_anywhere() -> None:
    scanner = EicarScanner()
    assert scanner.scan(io.BytesIO(b"header " * 1000 + EICAR + b" trailer")) == ScanResult(
        "infected", "Eicar-Test-Signature"
    )
    assert scanner.scan(io.BytesIO(CLEAN_PDF)).state == "clean"
    assert scanner.scan(io.BytesIO(b"")).state == "clean"


@pytest.mark.parametrize("split", [1, 10, 34, 67])
def test_eicar_scanner_finds_eicar_across_a_chunk_boundary(split: int) -> None:
    chunk = 128
    data = b"x" * (chunk - split) + EICAR + b"y" * 500
    assert data[:chunk].endswith(EICAR[:split])  # the string really straddles the boundary
    assert EicarScanner(chunk_size=chunk).scan(io.BytesIO(data)).state == "infected"


def test_eicar_scanner_does_not_match_a_broken_string() -> None:
    broken = EICAR[:30] + b"\n" + EICAR[30:]
    assert EicarScanner(chunk_size=100).scan(io.BytesIO(b"z" * 80 + broken)).state == "clean"


def test_scan_file_buffer_rewinds_before_and_after() -> None:
    stream = io.BytesIO(EICAR + b"tail")
    stream.seek(10)  # a scan must not start mid-file
    assert scan_file_buffer(EicarScanner(), stream).state == "infected"
    assert stream.tell() == 0


def test_disabled_scanning_is_unscanned_never_clean() -> None:
    scanner = build_scanner(Settings(av_scan_enabled=False, av_scanner="clamd"))
    assert isinstance(scanner, DisabledScanner)
    for data in (CLEAN_PDF, EICAR):
        result = scan_file_buffer(scanner, io.BytesIO(data))
        assert result.state == "unscanned"
        assert not result.is_clean
    scanner.check()


def test_build_scanner_follows_settings(clamd_server) -> None:
    assert isinstance(build_scanner(Settings(av_scanner="eicar")), EicarScanner)
    scanner = build_scanner(Settings(av_scanner="clamd", clamd_url=clamd_server.url, clamd_timeout_seconds=7))
    assert isinstance(scanner, ClamdScanner)
    assert scanner.timeout == 7
    clamd_server.start()
    scanner.check()
