"""Every way clamd can answer, classified so that nothing unread is ever clean: against the real
clamd the tests start (deploy/clamd.conf's limits and alerts), and against a small socket server
of this test's own for answers a real clamd cannot be made to give on demand."""
from __future__ import annotations

import io
import re
import socket
import struct
import threading
import time
import zipfile
from pathlib import Path

import pytest

from core.evidence.clamd_client import ScannerFailure, classify
from core.evidence.scanning import ClamdScanner, ScanResult, scan_file_buffer
from core.platform.errors import ScannerUnavailable
from tests.evidence_support import pdf_with_embedded_file
from tests.services.clamd import LIMITS
from tests.services.fake_clamd import fake_clamd

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MIB = 1024 * 1024
DEPLOY_CONF = Path(__file__).resolve().parents[1] / "deploy" / "clamd.conf"


def nested_zip(depth: int) -> bytes:
    data = b"hello"
    for level in range(depth):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"level{level}.zip", data)
        data = out.getvalue()
    return data


def encrypted_zip() -> bytes:
    """A zip whose member says it is encrypted (general-purpose flag bit 0), as a password-protected
    archive does; clamd cannot read it."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("statement.txt", b"private " * 100)
    data = bytearray(out.getvalue())
    data[6] |= 1
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 1
    return bytes(data)


@pytest.fixture
def scanner(clamd_server) -> ClamdScanner:
    clamd_server.start()
    return ClamdScanner(clamd_server.url, timeout=30)


# -- the real clamd, with the limits deploy/ ships ---------------------------------------------

def test_the_reported_pdf_is_unscannable_never_clean(scanner):
    """The field report: a ~123 KB PDF whose embedded file inflates to 120 MiB of zeros and then
    EICAR. With ClamAV's defaults this was OK; past MaxFileSize it must say so."""
    bomb = pdf_with_embedded_file(120)
    assert 100_000 < len(bomb) < 150_000
    result = scan_file_buffer(scanner, io.BytesIO(bomb))
    assert result == ScanResult("unscannable", "Heuristics.Limits.Exceeded.MaxFileSize", "limits_exceeded")
    assert not result.is_clean


def test_the_same_pdf_within_the_limits_is_found_infected(scanner):
    result = scan_file_buffer(scanner, io.BytesIO(pdf_with_embedded_file(90)))
    assert (result.state, result.signature) == ("infected", "Eicar-Test-Signature.UNOFFICIAL")


def test_nesting_past_max_recursion_is_unscannable(scanner):
    result = scan_file_buffer(scanner, io.BytesIO(nested_zip(20)))
    assert result == ScanResult("unscannable", "Heuristics.Limits.Exceeded.MaxRecursion", "limits_exceeded")
    assert scan_file_buffer(scanner, io.BytesIO(nested_zip(3))).state == "clean"


def test_more_files_than_max_files_is_unscannable(scanner):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for i in range(10_001):
            zf.writestr(f"f{i}.txt", b"x")
    result = scan_file_buffer(scanner, io.BytesIO(out.getvalue()))
    assert result == ScanResult("unscannable", "Heuristics.Limits.Exceeded.MaxFiles", "limits_exceeded")


def test_an_encrypted_archive_is_unscannable(scanner):
    result = scan_file_buffer(scanner, io.BytesIO(encrypted_zip()))
    assert result == ScanResult("unscannable", "Heuristics.Encrypted.Zip", "encrypted")


def test_a_stream_past_stream_max_length_is_reported_as_that(scanner):
    """clamd answers "INSTREAM size limit exceeded" and hangs up; the client's send then fails
    with a broken pipe. That is the StreamMaxLength refusal, not a network error."""
    result = scan_file_buffer(scanner, io.BytesIO(b"\0" * (65 * MIB)))
    assert result == ScanResult("unscannable", "StreamMaxLength", "stream_too_long")


def test_a_file_on_disk_is_sent_whole_and_judged_as_from_memory(scanner, tmp_path):
    """A real file goes to clamd by sendfile, in 1 MiB chunks: every byte is sent (the file is
    left at its end), EICAR at the very end of a 3 MiB file is found, and past StreamMaxLength
    the answer is the same refusal as from memory."""
    clean = tmp_path / "clean.csv"
    clean.write_bytes(b"a,b\n" * (768 * 1024) + b"x")
    with open(clean, "rb") as fh:
        assert scanner.scan(fh) == ScanResult("clean")
        assert fh.tell() == 3 * MIB + 1
    infected = tmp_path / "infected.csv"
    infected.write_bytes(b" " * (3 * MIB - len(EICAR)) + EICAR)
    with open(infected, "rb") as fh:
        assert scanner.scan(fh).state == "infected"
    too_long = tmp_path / "long.bin"
    with open(too_long, "wb") as fh:
        fh.truncate(65 * MIB)
    with open(too_long, "rb") as fh:
        assert scanner.scan(fh) == ScanResult("unscannable", "StreamMaxLength", "stream_too_long")


def test_the_stream_limit_is_asked_without_sending_a_file(scanner):
    assert scanner.stream_limit_warning(25 * MIB) is None
    assert scanner.stream_limit_warning(64 * MIB) is None  # exactly the limit still fits
    warning = scanner.stream_limit_warning(64 * MIB + 1)
    assert warning and "StreamMaxLength" in warning and "MAX_UPLOAD_MB" in warning
    scanner.check()  # clamd is still fine after the questions


def test_readyz_warns_when_stream_max_length_is_below_max_upload(make_app, clamd_server):
    clamd_server.start()
    fine = make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.url, MAX_UPLOAD_MB=25).test_client().get("/readyz")
    assert fine.status_code == 200 and "warning" not in fine.json["checks"]["scanner"]
    low = make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.url, MAX_UPLOAD_MB=100).test_client().get("/readyz")
    assert low.status_code == 200  # the scanner works; smaller files scan fine
    assert "StreamMaxLength is below MAX_UPLOAD_MB (100 MB)" in low.json["checks"]["scanner"]["warning"]


def test_deploy_ships_the_limits_and_alerts_the_tests_use():
    shipped = {line.split()[0]: line.split()[1] for line in DEPLOY_CONF.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for line in LIMITS:
        name, value = line.split()
        assert shipped.get(name) == value, f"deploy/clamd.conf: {name} should be {value}"
    # Both size limits stay above the default MAX_UPLOAD_MB (25).
    for name in ("StreamMaxLength", "MaxFileSize"):
        assert int(re.fullmatch(r"(\d+)M", shipped[name]).group(1)) > 25


# -- answers a real clamd gives only when something is wrong: a server of our own --------------

def read_stream(conn) -> int:
    """Read a whole INSTREAM (command and chunks) as clamd does; returns the bytes of file data."""
    buf = b""
    while b"\0" not in buf:
        buf += conn.recv(64)
    buf = buf.split(b"\0", 1)[1]
    total = 0
    while True:
        while len(buf) < 4:
            buf += conn.recv(65536)
        (size,) = struct.unpack("!L", buf[:4])
        buf = buf[4:]
        if size == 0:
            return total
        while len(buf) < size:
            buf += conn.recv(65536)
        buf, total = buf[size:], total + size


def answer(reply: bytes):
    def play(conn):
        read_stream(conn)
        conn.sendall(reply)
    return play


@pytest.mark.parametrize("reply, kind, words", [
    (b"Can't allocate memory ERROR\0", "error", "clamd reported an error: Can't allocate memory"),
    (b"UNKNOWN COMMAND\n", "protocol", "UNKNOWN COMMAND"),
    (b"stream: something odd\0", "protocol", "does not know"),
    (b"COMMAND READ TIMED OUT\0", "protocol", "does not know"),
    (b"", "closed", "closed the connection"),
])
def test_an_answer_that_is_no_verdict_fails_closed(reply, kind, words):
    with fake_clamd(answer(reply)) as url:
        with pytest.raises(ScannerFailure) as info:
            ClamdScanner(url, timeout=5).scan(io.BytesIO(b"%PDF-1.4 tiny"))
    assert info.value.kind == kind and words in info.value.message
    assert isinstance(info.value, ScannerUnavailable) and info.value.status == 503  # the file stays pending


def test_a_connection_closed_half_way_through_the_file_fails_closed():
    def hang_up_mid_file(conn):
        conn.recv(1024)  # the command and the start of the first chunk, then goes away
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, as a crash does

    with fake_clamd(hang_up_mid_file) as url:
        with pytest.raises(ScannerFailure) as info:
            ClamdScanner(url, timeout=5).scan(io.BytesIO(b"\0" * (4 * MIB)))
    assert info.value.kind == "closed"
    assert "StreamMaxLength" in info.value.message  # the one setting that makes clamd do this on purpose


def test_a_clamd_that_never_answers_times_out_and_fails_closed():
    release = threading.Event()

    def silent(conn):
        read_stream(conn)
        release.wait(10)

    with fake_clamd(silent) as url:
        try:
            with pytest.raises(ScannerFailure) as info:
                ClamdScanner(url, timeout=0.5).scan(io.BytesIO(b"%PDF-1.4 tiny"))
        finally:
            release.set()
    assert info.value.kind == "timeout" and "no answer within 0.5 s" in info.value.message


def test_a_ping_answered_wrongly_is_unavailable():
    def wrong(conn):
        conn.recv(64)
        conn.sendall(b"UNKNOWN COMMAND\n")

    with fake_clamd(wrong) as url:
        with pytest.raises(ScannerFailure) as info:
            ClamdScanner(url, timeout=5).check()
    assert info.value.kind == "protocol"


@pytest.mark.parametrize("reply, expected", [
    ("stream: OK", ScanResult("clean")),
    ("stream: Win.Test.EICAR_HDB-1 FOUND", ScanResult("infected", "Win.Test.EICAR_HDB-1")),
    ("stream: Heuristics.Limits.Exceeded.MaxScanTime FOUND",
     ScanResult("unscannable", "Heuristics.Limits.Exceeded.MaxScanTime", "limits_exceeded")),
    ("stream: Heuristics.Encrypted.PDF FOUND", ScanResult("unscannable", "Heuristics.Encrypted.PDF", "encrypted")),
    ("stream: Heuristics.OLE2.ContainsMacros FOUND", ScanResult("infected", "Heuristics.OLE2.ContainsMacros")),
    ("INSTREAM size limit exceeded. ERROR", ScanResult("unscannable", "StreamMaxLength", "stream_too_long")),
])
def test_each_verdict_line_has_one_meaning(reply, expected):
    verdict = classify(reply)
    assert ScanResult(verdict.state, verdict.name, verdict.reason) == expected


def _ok_at_once_then_read_all(conn):
    """A broken scanner: answers OK as soon as the stream starts, then reads the file anyway."""
    buf = b""
    while b"\0" not in buf:
        buf += conn.recv(64)
    conn.sendall(b"stream: OK\0")
    time.sleep(0.3)
    while conn.recv(1 << 20):
        pass


def _ok_then_hang_up(conn):
    """A broken scanner: reads about 300 KiB, answers OK and goes away (reset, as a crash does)."""
    got = 0
    while got < 300 * 1024 and (data := conn.recv(65536)):
        got += len(data)
    conn.sendall(b"stream: OK\0")
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("behaviour", [_ok_at_once_then_read_all, _ok_then_hang_up])
@pytest.mark.parametrize("on_disk", [False, True])
def test_an_ok_given_before_clamd_had_the_whole_file_is_not_clean(behaviour, on_disk, tmp_path):
    """Clean means the scanner read all of it: an OK that came before the end of the stream, or
    with the stream cut off, fails closed (the file stays pending and is tried again)."""
    data = b"a,b\n" * (4 * MIB)  # 16 MiB: more than loopback's socket buffers take without a read
    if on_disk:
        (tmp_path / "f.csv").write_bytes(data)
        stream = open(tmp_path / "f.csv", "rb")
    else:
        stream = io.BytesIO(data)
    with fake_clamd(behaviour) as url, stream:
        with pytest.raises(ScannerFailure) as info:
            ClamdScanner(url, timeout=5).scan(stream)
    assert info.value.kind in ("protocol", "closed")
    assert isinstance(info.value, ScannerUnavailable)  # fail closed: pending, not clean
