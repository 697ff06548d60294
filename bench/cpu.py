"""Where the CPU goes during another benchmark: web (gunicorn), workers (`flask worker`),
PostgreSQL, Redis, clamd and the benchmark's own process, per unit of work.

Runs the benchmark as a child, polls every process's CPU time with psutil, and prints each
group's CPU seconds and the same divided by --per (events, records...). PostgreSQL and Redis are
counted from when the run started; their figures include whatever else they did meanwhile (for
bench.ingest: its baseline's inserts), so they are upper bounds.

    .venv/bin/python -m bench.cpu --per 8000 -- bench.ingest --events 8000
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable

import psutil

from bench.common import ROOT

POLL_S = 0.3


def group(proc: psutil.Process, child_pid: int) -> str | None:
    try:
        name, cmd = proc.name(), " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if proc.pid == child_pid:
        return "benchmark"
    if "gunicorn" in cmd:
        return "web"
    if "flask worker" in cmd:
        return "workers"
    if name.startswith("postgres"):
        return "postgresql"
    if name.startswith("redis-server"):
        return "redis"
    if name == "clamd":
        return "clamd"
    return None


def process_cpu(pid: int, ticks: float) -> float:
    """Seconds of CPU `pid` has used, its exited threads included, to the nanosecond: Linux's
    per-process CPU clock (clock id `(~pid << 3) | 2`, CPUCLOCK_SCHED, what
    clock_getcpuclockid(3) returns), readable for any process. /proc's user and system times
    (`ticks`, the fallback) come in 10 ms steps, too coarse for a phase of a few hundred ms."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        return ticks


class Meter:
    """CPU seconds per group between two snapshots: for this script's polling, and for a benchmark
    that measures its own phases (bench/upload.py). A process's own CPU is read to the
    nanosecond (process_cpu); its exited children's (a work horse's) in 10 ms ticks.
    `benchmark_pid` is counted as "benchmark"; `exclude` leaves out
    processes that are measuring, not working (a poller's database backend); `only` keeps a
    group to the benchmark's own processes."""

    def __init__(self, exclude: set[int] = frozenset(), benchmark_pid: int = -1,
                 only: dict[str, Callable[[], set[int]]] | None = None):
        self.exclude, self.benchmark_pid = exclude, benchmark_pid
        # On a shared machine PostgreSQL and Redis serve other people's work too: `only` maps a
        # group to a function giving the pids that are the benchmark's own (its database's
        # backends, a Redis server of its own), asked at every snapshot.
        self.only = only or {}

    def snapshot(self) -> dict[int, tuple[str, float]]:
        out = {}
        allowed = {kind: pids() for kind, pids in self.only.items()}
        for proc in psutil.process_iter():
            kind = None if proc.pid in self.exclude else group(proc, self.benchmark_pid)
            if kind is None or (kind in allowed and proc.pid not in allowed[kind]):
                continue
            try:
                times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            # Children's times too: a forked RQ work horse has exited (and been waited for)
            # before the next snapshot, so its CPU shows only in its parent's children times.
            out[proc.pid] = (kind, process_cpu(proc.pid, times.user + times.system)
                             + times.children_user + times.children_system)
        return out

    @staticmethod
    def used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, (kind, cpu) in after.items():
            totals[kind] = totals.get(kind, 0.0) + cpu - before.get(pid, (kind, 0.0))[1]
        return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per", type=int, required=True, help="units of work the benchmark does (e.g. its --events)")
    parser.add_argument("bench", nargs=argparse.REMAINDER, help="-- then the benchmark module and its arguments")
    args = parser.parse_args()
    command = [a for a in args.bench if a != "--"]
    if not command:
        raise SystemExit("error: name the benchmark after --, e.g. -- bench.ingest --events 8000")

    child = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT)
    meter = Meter(benchmark_pid=child.pid)
    # What ran before the first poll counts from there; what started later, in full; what ended
    # between polls, up to its last reading.
    first = meter.snapshot()
    last = dict(first)
    while child.poll() is None:
        time.sleep(POLL_S)
        last.update(meter.snapshot())
    if child.returncode:
        raise SystemExit(f"error: {' '.join(command)} exited with {child.returncode}")
    totals = Meter.used(first, last)
    print(f"{'group':<12} {'CPU s':>8} {'ms per unit':>12}")
    for kind in ("web", "workers", "postgresql", "redis", "clamd", "benchmark"):
        if kind in totals:
            print(f"{kind:<12} {totals[kind]:>8.2f} {totals[kind] * 1000 / args.per:>12.2f}")
    print(f"units: {args.per}; sampled every {POLL_S} s, so a process shorter than that may be missed")


if __name__ == "__main__":
    main()
