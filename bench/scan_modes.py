"""clamd's CPU per file by how the file reaches it: INSTREAM from memory (the upload benchmark's
baseline), INSTREAM from a file on disk (sendfile), and FILDES (the descriptor over clamd's unix
socket, what the app does for a file on local disk). One clamd of this run's own, the same
limits as production's; the three ways interleaved in rounds, clamd's CPU read around each.

    .venv/bin/python -m bench.scan_modes [--mib 1 25] [--files 10] [--rounds 5]
"""
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.upload import MB, csv_bytes, start_clamd  # noqa: E402
from core.evidence.clamd_client import ClamdConnection  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, nargs="+", default=[1, 25])
    parser.add_argument("--files", type=int, default=10, help="scans per way and round (a fifth at 25 MiB and up)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scan-modes-"))
    clamd = None
    try:
        clamd = start_clamd(work / "clamd")
        proc = psutil.Process(clamd.process.pid)
        tcp, unix = ClamdConnection(clamd.url, 60), ClamdConnection(clamd.unix_url, 60)
        print(f"{'size':>7} {'way':<28} {'clamd CPU ms/file':>18} {'client CPU ms/file':>19} {'vs INSTREAM from memory':>24}")
        for mib in args.mib:
            data = csv_bytes(mib * MB)
            with open(work / "file.csv", "w+b") as on_disk:
                on_disk.write(data)
                on_disk.flush()

                def from_memory():
                    return tcp.instream(io.BytesIO(data))

                def sendfile():
                    on_disk.seek(0)
                    return tcp.instream(on_disk)

                def fildes():
                    on_disk.seek(0)
                    return unix.scan(on_disk)

                ways = {"INSTREAM from memory (TCP)": from_memory, "INSTREAM sendfile (TCP)": sendfile,
                        "FILDES (unix socket)": fildes}
                for way in ways.values():  # warm: clamd's threads, the page cache
                    assert way().state == "clean"
                count = max(1, args.files // 5 if mib >= 25 else args.files)
                cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
                for _ in range(args.rounds):
                    for name, way in ways.items():
                        before, mine = proc.cpu_times(), time.process_time()
                        for _ in range(count):
                            way()
                        after, mine = proc.cpu_times(), time.process_time() - mine
                        used = (after.user + after.system - before.user - before.system) * 1000 / count
                        cpu[name].append((used, mine * 1000 / count))
                base = statistics.median(c for c, _ in cpu["INSTREAM from memory (TCP)"])
                for name, rounds in cpu.items():
                    clamd_ms = statistics.median(c for c, _ in rounds)
                    client_ms = statistics.median(m for _, m in rounds)
                    print(f"{mib:>4}MiB {name:<28} {clamd_ms:>18.1f} {client_ms:>19.2f} {clamd_ms / base:>23.2f}x")
        print("clamd's CPU from /proc (10 ms ticks, averaged over each round's files); median of the rounds")
    finally:
        if clamd is not None:
            clamd.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
