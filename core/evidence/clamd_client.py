"""clamd's INSTREAM and FILDES protocols, and one classification for every way clamd can answer.

How a file reaches clamd: on a unix socket (CLAMD_URL unix:///path) a file on local disk is
handed over as its descriptor (FILDES, clamd(8)); clamd then reads the file itself, from its
first byte to its last, instead of receiving a copy through the socket and writing it to a
temporary file of its own. That halves clamd's CPU per file (25 MiB: about 117 ms by INSTREAM, 60
by FILDES; docs/performance.md). clamd gets a read-only descriptor of its own. Anything else (a
TCP socket, a stream that is not a plain file, a stream not at its first byte, a clamd that does
not know FILDES or that the descriptor cannot reach, such as one behind a byte proxy) goes by
INSTREAM.

clamd's answers (ClamAV 1.4; each checked in tests/test_clamd_answers.py against a real clamd, or
against a small socket server of the test's own for answers a real clamd gives only when
something is wrong), and what they become:

- `stream: OK` -> clean (FILDES answers `fd[<n>]: ...` in place of `stream: `, with the same
  meanings).
- `stream: <name> FOUND` -> infected, except:
  `Heuristics.Limits.Exceeded.*` (clamd stopped at MaxFileSize, MaxScanSize, MaxRecursion,
  MaxFiles, MaxScanTime...; reported only with AlertExceedsMax) -> unscannable `limits_exceeded`;
  `Heuristics.Encrypted.*` (AlertEncrypted) -> unscannable `encrypted`.
- `INSTREAM size limit exceeded. ERROR`, after which clamd closes the connection (so the
  client's next send fails with a broken pipe) -> unscannable `stream_too_long` (StreamMaxLength).
- Any other `... ERROR` -> ScannerFailure `error`; `UNKNOWN COMMAND` or a line this client does
  not know -> `protocol`; no answer within the timeout -> `timeout`; the connection closed
  without an answer -> `closed`; no connection -> `unreachable`. A ScannerFailure leaves the
  file pending and the scan is retried (it is a ScannerUnavailable).

Nothing here ever reads an unexpected answer as clean.
"""
from __future__ import annotations

import array
import io
import os
import re
import select
import socket
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from core.platform.errors import ScannerUnavailable
from core.platform.settings import clamd_address

# Large chunks: per-chunk Python (a read, a header, two sends) dominated at 64 KiB, and clamd
# takes any chunk length up to what is left of its StreamMaxLength.
CHUNK_BYTES = 1024 * 1024
MAX_REPLY_BYTES = 64 * 1024
STREAM_LIMIT_REPLY = "INSTREAM size limit exceeded. ERROR"
LIMITS_PREFIX = "Heuristics.Limits.Exceeded."
ENCRYPTED_PREFIX = "Heuristics.Encrypted."
_SUBJECT = re.compile(r"(?:stream|fd\[\d{1,10}\]): ")  # what INSTREAM / FILDES answers are about


class ScannerFailure(ScannerUnavailable):
    """clamd could not give a verdict. `kind` is one of unreachable, timeout, closed, error,
    protocol; the file stays pending and the scan is retried (fail closed)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Verdict:
    """What clamd said about one stream: state clean | infected | unscannable, the signature or
    heuristic name clamd gave, and for unscannable the reason code."""
    state: str
    name: str | None = None
    reason: str | None = None


def classify(reply: str) -> Verdict:
    """One INSTREAM answer (without its trailing NUL/newline) -> a Verdict, or ScannerFailure."""
    if reply == STREAM_LIMIT_REPLY:
        return Verdict("unscannable", "StreamMaxLength", "stream_too_long")
    if reply.endswith(" ERROR"):
        raise ScannerFailure("error", f"clamd reported an error: {reply[:-6].strip()[:200]}")
    if reply == "UNKNOWN COMMAND":
        raise ScannerFailure("protocol", "clamd answered UNKNOWN COMMAND to INSTREAM (is CLAMD_URL a clamd?)")
    subject = _SUBJECT.match(reply)
    if subject:
        body = reply[subject.end():]
        if body == "OK":
            return Verdict("clean")
        if body.endswith(" FOUND") and len(body) > len(" FOUND"):
            name = body[: -len(" FOUND")].strip()
            if name.startswith(LIMITS_PREFIX):
                return Verdict("unscannable", name, "limits_exceeded")
            if name.startswith(ENCRYPTED_PREFIX):
                return Verdict("unscannable", name, "encrypted")
            return Verdict("infected", name)
    raise ScannerFailure("protocol", f"clamd gave an answer this client does not know: {reply[:200]!r}")


def _disk_file(stream: BinaryIO) -> int | None:
    """The descriptor of a regular file behind `stream` (sendfile's source), else None.
    Only plain file objects qualify: a wrapper that hashes or checks what it hands out must see
    every byte, so it is read the ordinary way."""
    if not isinstance(stream, (io.BufferedReader, io.BufferedRandom, io.FileIO)):
        return None
    try:
        if stream.writable():
            stream.flush()  # bytes still in the writer's buffer are not in the file yet
        fd = stream.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (OSError, ValueError):
        return None


class ClamdConnection:
    """One command on one connection (clamd's z-commands, NUL-terminated), opened per call so it
    is safe across forks. The timeout covers connect and every read and write."""

    def __init__(self, url: str, timeout: float):
        self.url = url
        self.timeout = timeout
        self.family, self.address = clamd_address(url)
        self.fildes_ok = True  # until a FILDES scan shows the descriptor cannot reach clamd

    def _open(self) -> socket.socket:
        sock = None
        try:
            if self.family == socket.AF_UNIX:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(self.address)
            else:  # by name or literal, IPv4 or IPv6, whichever resolves and answers
                sock = socket.create_connection(self.address, timeout=self.timeout)
        except socket.timeout:
            if sock is not None:
                sock.close()
            raise ScannerFailure("timeout", f"clamd at {self.url} did not accept a connection within "
                                            f"{self.timeout:g} s") from None
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise ScannerFailure("unreachable", f"cannot connect to clamd at {self.url}: {exc}") from None
        return sock

    def _read_reply(self, sock: socket.socket, sent: int | None = None) -> str:
        data = b""
        try:
            while b"\0" not in data and b"\n" not in data and len(data) < MAX_REPLY_BYTES:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            raise ScannerFailure("timeout", f"clamd at {self.url} gave no answer within {self.timeout:g} s") from None
        except OSError as exc:
            if not data:
                raise ScannerFailure("closed", self._closed_message(sent, exc)) from None
        if not data:
            raise ScannerFailure("closed", self._closed_message(sent, None))
        return data.split(b"\0")[0].split(b"\n")[0].decode("utf-8", "replace").strip()

    def _closed_message(self, sent: int | None, exc: OSError | None) -> str:
        """`sent` is how much of a stream INSTREAM had sent; None for FILDES and commands, where
        no stream is sent and StreamMaxLength cannot be the cause (clamd died or hung up)."""
        why = f" ({exc})" if exc else ""
        if sent is None:
            return f"clamd at {self.url} closed the connection without an answer{why}"
        return (f"clamd at {self.url} closed the connection after {sent} bytes of the file without an answer{why}; "
                f"if that is near clamd's StreamMaxLength, raise StreamMaxLength above MAX_UPLOAD_MB")

    @contextmanager
    def _sending_command(self) -> Iterator[None]:
        """A command's send failing: ScannerFailure `timeout` or `closed`."""
        try:
            yield
        except socket.timeout:
            raise ScannerFailure("timeout", f"clamd at {self.url} did not take a command within "
                                            f"{self.timeout:g} s") from None
        except OSError as exc:
            raise ScannerFailure("closed", f"clamd at {self.url} closed the connection: {exc}") from None

    def command(self, name: str) -> str:
        """Send a simple command (PING, VERSION) and return clamd's one-line answer."""
        sock = self._open()
        try:
            with self._sending_command():
                sock.sendall(b"z" + name.encode("ascii") + b"\0")
            return self._read_reply(sock)
        finally:
            sock.close()

    def scan(self, stream: BinaryIO) -> Verdict:
        """Scan `stream` from its current position to its end and classify clamd's answer: by
        FILDES when this is a unix socket and the stream is a plain file on disk at offset 0
        (clamd reads the whole file, so the stream is then left at its end, as INSTREAM leaves
        it after the last byte sent), else by INSTREAM. A clamd that cannot take a descriptor
        (fildes() returns None) gets this file's bytes, and INSTREAM from then on (this connection object's lifetime). Raises
        ScannerFailure as instream does."""
        fd = _disk_file(stream) if self.family == socket.AF_UNIX and self.fildes_ok else None
        if fd is not None and stream.tell() == 0:
            try:
                readonly = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return self.instream(stream)  # no /proc: clamd gets a copy through the socket
            try:
                size = os.fstat(readonly).st_size
                verdict = self.fildes(readonly)
            finally:
                os.close(readonly)
            if verdict is not None:
                stream.seek(size)
                return verdict
            self.fildes_ok = False
        return self.instream(stream)

    def fildes(self, fd: int) -> Verdict | None:
        """Hand clamd the open file `fd` (FILDES: the command, then one byte carrying the
        descriptor as SCM_RIGHTS ancillary data; clamd(8)) and classify its answer. clamd reads
        the file itself, all of it, whatever the descriptor's offset. Unix sockets only. Raises
        ScannerFailure as instream does; returns None when clamd answers UNKNOWN COMMAND (built without
        descriptor passing) or an ERROR about the descriptor not arriving (a proxy in between), so
        the caller can send the bytes instead."""
        sock = self._open()
        try:
            with self._sending_command():
                sock.sendall(b"zFILDES\0")
                sock.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            reply = self._read_reply(sock)
            if reply == "UNKNOWN COMMAND" or (reply.endswith(" ERROR") and "descriptor" in reply.lower()):
                # Built without descriptor passing, or a byte proxy (socat) in front of clamd that
                # cannot carry one ("No file descriptor received. ERROR"): the bytes can still go.
                return None
            return classify(reply)
        finally:
            sock.close()

    def instream(self, stream: BinaryIO, chunk_size: int = CHUNK_BYTES) -> Verdict:
        """Stream from the current position to the end (memory: one chunk) and classify clamd's
        answer. A real file (an io.BufferedReader/BufferedRandom or FileIO on disk) goes from
        the kernel's page cache to the socket with sendfile, without passing through Python, and
        is left positioned after the last byte sent. A send that fails because clamd hung up
        still reads what clamd said first: that is how its StreamMaxLength refusal arrives (the
        reply, then a broken pipe).

        An OK is a clean verdict only when clamd gave it after the whole stream was handed over:
        an answer already waiting before the end-of-stream chunk, or a send that failed, means
        clamd did not read everything, so an OK then raises ScannerFailure("protocol"). Real clamd
        answers only after that chunk (clamd/session.c); what it refuses early (StreamMaxLength)
        or finds early (FOUND) is still taken. A scanner that reads part of a small file, which
        the kernel's buffers took whole, and says OK cannot be told apart from one that read it
        all."""
        sock = self._open()
        sent, cut_short = 0, False
        try:
            try:
                sock.sendall(b"zINSTREAM\0")
                fd = _disk_file(stream)
                if fd is not None:
                    offset = stream.tell()
                    end = os.fstat(fd).st_size
                    while offset < end:
                        n = min(chunk_size, end - offset)
                        sock.sendall(struct.pack("!L", n))
                        done = sock.sendfile(stream, offset, n)
                        sent, offset = sent + done, offset + done
                        if done < n:
                            raise ScannerFailure("closed", f"the file ended after {sent} bytes while being sent")
                else:
                    while chunk := stream.read(chunk_size):
                        # Two sends, not header + chunk: the concatenation copied every chunk.
                        sock.sendall(struct.pack("!L", len(chunk)))
                        sock.sendall(chunk)
                        sent += len(chunk)
                # clamd answers after the end-of-stream chunk; an answer already here was early.
                cut_short = bool(select.select([sock], [], [], 0)[0])
                sock.sendall(struct.pack("!L", 0))
            except socket.timeout:
                raise ScannerFailure("timeout", f"clamd at {self.url} stopped reading the file for "
                                                f"{self.timeout:g} s after {sent} bytes") from None
            except ScannerFailure:
                raise
            except OSError:
                cut_short = True  # clamd hung up; its answer, if it gave one, is still in our receive buffer
            verdict = classify(self._read_reply(sock, sent))
            if cut_short and verdict.state == "clean":
                raise ScannerFailure("protocol", f"clamd said OK before it had the whole file ({sent} bytes "
                                                 "sent); an OK for part of a file is not a clean verdict")
            return verdict
        finally:
            sock.close()

    def stream_limit_below(self, size_bytes: int) -> bool:
        """True if clamd's StreamMaxLength is below size_bytes. clamd has no command that prints
        its configuration, but it checks each INSTREAM chunk's declared length against what is
        left of StreamMaxLength before reading the chunk (clamd/session.c), so declaring one chunk
        of size_bytes and sending none of it asks the question for free. Raises ScannerFailure
        if clamd cannot be asked."""
        sock = self._open()
        try:
            try:
                sock.sendall(b"zINSTREAM\0" + struct.pack("!L", size_bytes))
                sock.shutdown(socket.SHUT_WR)  # no bytes follow: clamd ends the stream without a scan
            except OSError as exc:
                raise ScannerFailure("closed", f"clamd at {self.url} closed the connection: {exc}") from None
            try:
                data = sock.recv(4096)
            except socket.timeout:
                raise ScannerFailure("timeout", f"clamd at {self.url} gave no answer within {self.timeout:g} s") from None
            except OSError:
                data = b""
            return data.split(b"\0")[0].strip().decode("utf-8", "replace") == STREAM_LIMIT_REPLY
        finally:
            sock.close()
