"""The upload door's multipart parser (core/evidence/multipart.py) against werkzeug's own
MultiPartParser on the same bodies, in the same run: CPU per body, median of interleaved rounds.

Each body is a browser-like form (three fields, one CSV file) with a new boundary, parsed as the
app parses it: reads of form_parsing.READ_SIZE through werkzeug's LimitedStream into UploadSpools
on this disk, with the gunicorn workers' heap setting (core/platform/heap.py). Two hostile bodies
(look-alike delimiters, whitespace after a delimiter) show the parser costs no more than
werkzeug's where an attacker picks the bytes.

    .venv/bin/python -m bench.multipart [--rounds 5] [--bodies 20]
"""
from __future__ import annotations

import argparse
import io
import shutil
import statistics
import tempfile
import time
import uuid

from werkzeug.formparser import MultiPartParser
from werkzeug.wsgi import LimitedStream

from bench.common import ROOT
from core.evidence.form_parsing import READ_SIZE
from core.evidence.multipart import Parser
from core.evidence.spooling import UploadSpool
from core.platform.heap import keep_large_buffers

MB = 1024 * 1024


def form_body(boundary: bytes, data: bytes) -> bytes:
    parts = [b"--" + boundary + b'\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (name, value)
             for name, value in ((b"csrf_token", b"x" * 90), (b"activity_code", b"EXPLORE"), (b"session_date", b"2026-12-01"))]
    parts.append(b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; filename="week.csv"\r\n'
                 b"Content-Type: text/csv\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n")
    return b"".join(parts)


def cases() -> dict[str, tuple[bytes, bytes | None]]:
    """name -> (file data, fixed boundary or None for a new one per body)."""
    csv = b"a,b,c\n1,2,3\n"
    return {
        "CSV 1 MiB": ((csv * (MB // len(csv) + 1))[:MB], None),
        "CSV 25 MiB": ((csv * (25 * MB // len(csv) + 1))[:25 * MB], None),
        "hostile: look-alike lines, 1 MiB": ((b"\n--ax" * (MB // 5)), b"a"),
        "hostile: spaces after a delimiter, 1 MiB": (b"\n--a" + b" " * MB + b"y", b"a"),
    }


def cpu_ms(parser_cls, bodies: list[tuple[bytes, bytes]], spool_dir: str) -> float:
    def spool(**_):
        return UploadSpool(100 * MB, pdf=False, directory=spool_dir)

    parser = parser_cls(stream_factory=spool, max_form_memory_size=MB, buffer_size=READ_SIZE)
    started = time.process_time()
    for body, boundary in bodies:
        _form, files = parser.parse(LimitedStream(io.BytesIO(body), len(body)), boundary, len(body))
        for storage in files.values():
            storage.stream.close()
    return (time.process_time() - started) * 1000 / len(bodies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bodies", type=int, default=20, help="bodies per round (a fifth of them at 25 MiB)")
    args = parser.parse_args()
    keep_large_buffers()
    spool_dir = tempfile.mkdtemp(prefix="bench-multipart-", dir=ROOT)  # the storage's disk, as in the app
    try:
        print(f"{'body':<42} {'werkzeug ms':>12} {'ours ms':>9} {'ratio':>6}  rounds (ours / werkzeug)")
        for name, (data, fixed) in cases().items():
            count = max(1, args.bodies // 5) if len(data) > 5 * MB else args.bodies
            times: dict[str, list[float]] = {"werkzeug": [], "ours": []}
            for _ in range(args.rounds):  # interleaved, so both see the same machine
                boundaries = [fixed or ("----WebKitFormBoundary" + uuid.uuid4().hex[:16]).encode() for _ in range(count)]
                bodies = [(form_body(b, data), b) for b in boundaries]
                times["werkzeug"].append(cpu_ms(MultiPartParser, bodies, spool_dir))
                times["ours"].append(cpu_ms(Parser, bodies, spool_dir))
            theirs, ours = statistics.median(times["werkzeug"]), statistics.median(times["ours"])
            rounds = " ".join(f"{o / w:.2f}" for o, w in zip(times["ours"], times["werkzeug"]))
            print(f"{name:<42} {theirs:>12.2f} {ours:>9.2f} {ours / theirs:>6.2f}  {rounds}")
        print("CPU per body (time.process_time), median of the rounds; ratio = ours / werkzeug's MultiPartParser")
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
