"""A file on local disk reaches clamd as its descriptor (FILDES) on a unix socket: against the real
clamd the tests start (its LocalSocket), and against a small unix-socket server of this test's own
that checks what it was handed. Everything else still goes by INSTREAM."""
from __future__ import annotations

import array
import io
import os
import socket
import struct
import tempfile
from contextlib import contextmanager

import pytest

from core.evidence.clamd_client import ClamdConnection, ScannerFailure, classify
from core.evidence.scanning import ClamdScanner, ScanResult
from core.platform.db import db
from core.platform.models import Submission
from tests.evidence_support import EICAR_BYTES, pdf_with_embedded_file, post_upload, setup_people
from tests.services.fake_clamd import fake_clamd

MIB = 1024 * 1024


def on_disk(data: bytes):
    f = tempfile.TemporaryFile()
    f.write(data)
    f.seek(0)
    return f


def csv(size: int, tail: bytes = b"") -> bytes:
    row = b"2025-01-15,Lisbon,workshop,12,140\n"
    return (b"date,city,kind,peers,students\n" + row * (size // len(row) + 1))[:size] + tail


@pytest.fixture
def unix_scanner(clamd_server) -> ClamdScanner:
    clamd_server.start()
    return ClamdScanner(clamd_server.unix_url, timeout=30)


# -- the real clamd ------------------------------------------------------------------------------

def test_a_file_on_disk_is_read_whole_by_clamd_and_left_at_its_end(unix_scanner):
    clean = on_disk(csv(3 * MIB))
    assert unix_scanner.scan(clean) == ScanResult("clean")
    assert clean.tell() == 3 * MIB  # as INSTREAM leaves it: the caller's "every byte read" check

    # EICAR only in the last bytes of 5 MiB: found, so clamd read to the end of the file.
    infected = on_disk(csv(5 * MIB, tail=b"\n" + EICAR_BYTES))
    result = unix_scanner.scan(infected)
    assert (result.state, result.signature) == ("infected", "Eicar-Test-Signature.UNOFFICIAL")


def test_clamd_limits_hold_for_a_descriptor_too(unix_scanner):
    """The field report's PDF (an embedded file inflating past MaxFileSize) is unscannable by
    FILDES as by INSTREAM: never clean."""
    result = unix_scanner.scan(on_disk(pdf_with_embedded_file(120)))
    assert result == ScanResult("unscannable", "Heuristics.Limits.Exceeded.MaxFileSize", "limits_exceeded")


def test_what_is_not_a_plain_file_at_its_start_still_goes_by_instream(unix_scanner):
    assert unix_scanner.scan(io.BytesIO(EICAR_BYTES)).state == "infected"
    assert unix_scanner.scan(io.BytesIO(b"hello")) == ScanResult("clean")
    # From the current position to the end, as before: EICAR behind the position is not this scan's.
    f = on_disk(EICAR_BYTES + b"\n" + csv(1000))
    f.seek(len(EICAR_BYTES) + 1)
    assert unix_scanner.scan(f) == ScanResult("clean")


@pytest.mark.parametrize("reply, expected", [
    ("fd[11]: OK", ScanResult("clean")),
    ("fd[7]: Eicar-Test-Signature FOUND", ScanResult("infected", "Eicar-Test-Signature")),
    ("fd[7]: Heuristics.Limits.Exceeded.MaxFileSize FOUND",
     ScanResult("unscannable", "Heuristics.Limits.Exceeded.MaxFileSize", "limits_exceeded")),
    ("fd[7]: Heuristics.Encrypted.PDF FOUND", ScanResult("unscannable", "Heuristics.Encrypted.PDF", "encrypted")),
])
def test_fildes_answers_mean_what_instream_answers_mean(reply, expected):
    verdict = classify(reply)
    assert ScanResult(verdict.state, verdict.name, verdict.reason) == expected


@pytest.mark.parametrize("reply", ["fd[x]: OK", "fd[]: OK", "fd[11] OK", "file: OK", "fd[11]: ", "fd[11]: FOUND"])
def test_an_answer_about_something_else_is_never_clean(reply):
    with pytest.raises(ScannerFailure) as info:
        classify(reply)
    assert info.value.kind == "protocol"


# -- a server of our own, on a unix socket --------------------------------------------------------

@contextmanager
def fake_unix_clamd(fildes_reply=None):
    """Plays clamd on a unix socket (tests/services/fake_clamd.py). FILDES: receives the
    descriptor, records (what the file holds, whether it could be written through it) and answers
    fildes_reply(n), or UNKNOWN COMMAND when fildes_reply is None. INSTREAM: reads the chunks and
    answers OK, recording the bytes. Yields (url, what it saw)."""
    seen: list[tuple] = []

    def one(conn):
        command = b""
        while not command.endswith(b"\0"):
            command += conn.recv(1)
        if command == b"zFILDES\0":
            fds = array.array("i")
            _, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_LEN(fds.itemsize))
            fds.frombytes(ancillary[0][2][:fds.itemsize])
            fd = fds[0]
            try:
                if fildes_reply is None:
                    conn.sendall(b"UNKNOWN COMMAND\n")
                    return
                content = os.pread(fd, 64 * MIB, 0)
                try:
                    os.write(fd, b"x")
                    writable = True
                except OSError:
                    writable = False
            finally:
                os.close(fd)
            seen.append(("FILDES", content, writable))
            conn.sendall(fildes_reply(fd).encode() + b"\0")
        elif command == b"zINSTREAM\0":
            data = b""
            while True:
                size = struct.unpack("!L", conn.recv(4, socket.MSG_WAITALL))[0]
                if not size:
                    break
                data += conn.recv(size, socket.MSG_WAITALL)
            seen.append(("INSTREAM", data))
            conn.sendall(b"stream: OK\0")

    with fake_clamd(one, unix=True) as url:
        yield url, seen


def test_clamd_is_handed_the_file_read_only():
    with fake_unix_clamd(lambda fd: f"fd[{fd}]: OK") as (url, seen):
        f = on_disk(b"evidence bytes")
        assert ClamdScanner(url, timeout=5).scan(f) == ScanResult("clean")
    assert seen == [("FILDES", b"evidence bytes", False)]


def test_a_clamd_without_fildes_gets_the_bytes_instead_and_is_not_asked_again():
    with fake_unix_clamd(None) as (url, seen):
        conn = ClamdConnection(url, timeout=5)
        assert classify("stream: OK") == conn.scan(on_disk(b"first"))
        assert classify("stream: OK") == conn.scan(on_disk(b"second"))
    assert seen == [("INSTREAM", b"first"), ("INSTREAM", b"second")]


def test_an_upload_on_local_disk_is_scanned_by_descriptor_in_the_request(make_app):
    """The web's spool, linked into local storage, is what clamd is handed: the uploaded bytes,
    read-only, once; the file is clean when the POST answers."""
    body = csv(600 * 1024)  # past the in-memory spool (500 KiB), so the spool is a file on disk
    with fake_unix_clamd(lambda fd: f"fd[{fd}]: OK") as (url, seen):
        app = make_app(AV_SCANNER="clamd", CLAMD_URL=url, CLAMD_TIMEOUT_SECONDS=5, INLINE_SCAN_MAX_MB=1)
        setup_people(app)
        submission_id = post_upload(app, "attendance.csv", body)
    assert seen == [("FILDES", body, False)]
    with app.app_context():
        submission = db.session.get(Submission, submission_id)
        assert [(f.scan_state, f.size_bytes) for f in submission.files] == [("clean", len(body))]


def test_an_infected_upload_by_descriptor_is_rejected_against_the_real_clamd(make_app, clamd_server):
    clamd_server.start()
    app = make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.unix_url, CLAMD_TIMEOUT_SECONDS=10,
                   INLINE_SCAN_MAX_MB=2)
    setup_people(app)
    submission_id = post_upload(app, "attendance.csv", csv(MIB, tail=b"\n" + EICAR_BYTES))
    with app.app_context():
        submission = db.session.get(Submission, submission_id)
        assert submission.status == "rejected"
        assert [f.scan_state for f in submission.files] == ["infected"]
