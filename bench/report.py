"""Run the benchmarks one after another and end with one table: every figure of the performance
issue (18) with its same-run baseline or bound and a met / NOT met verdict.

Each benchmark prints its own detail as before, plus FIGURE lines (bench.common.figure) that this
script collects. A benchmark that fails still leaves its figures (and its failure) in the table.

    .venv/bin/python -m bench.report            # `make bench`: the everyday sizes, under 20 minutes
    .venv/bin/python -m bench.report --large    # `make bench-large`: 5M submissions / 15M ledger rows,
                                                # 10M Kajabi events (seeding alone takes tens of minutes)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench.common import FIGURE_TAG, ROOT

EVERYDAY = [
    ["bench.upload"],
    ["bench.ingest", "--events", "4000"],
    ["bench.outbox", "--records", "20000"],
    ["bench.queue", "--runs", "40"],
    ["bench.slo", "--events", "1000000"],
    ["bench.previews"],
    ["bench.near_lookup", "--images", "1000000"],
]
LARGE = [
    ["bench.queue", "--submissions", "5000000", "--ledger", "15000000", "--runs", "40"],
    ["bench.slo", "--events", "10000000"],
]


def run(command: list[str]) -> tuple[int, float, list[list[str]]]:
    """Run one benchmark module, echoing its output; returns (exit status, seconds, figures)."""
    print(f"\n##### {' '.join(command)}", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    figures = []
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.startswith(FIGURE_TAG):
            figures.append(line.rstrip("\n").split("\t")[1:])
    proc.wait()
    return proc.returncode, time.monotonic() - started, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="the ten-times-the-data seeds (goal 4)")
    parser.add_argument("--only", help="comma-separated module names to run, e.g. bench.upload,bench.slo")
    args = parser.parse_args()
    commands = LARGE if args.large else EVERYDAY
    if args.only:
        wanted = set(args.only.split(","))
        commands = [c for c in commands if c[0] in wanted]

    started = time.monotonic()
    rows, failed = [], []
    for command in commands:
        status, seconds, figures = run(command)
        rows.extend(figures)
        print(f"##### {command[0]}: {seconds:.0f} s, exit status {status}", flush=True)
        if status and not figures:  # bench.queue exits 1 for a missed goal, with its figures printed
            failed.append(f"{command[0]} (exit {status})")

    total = time.monotonic() - started
    print(f"\n===== issue 18 figures, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end, "
          f"{total / 60:.1f} min in all")
    # A Markdown table, so a run can be pasted into docs/performance.md as it is.
    print("| goal | figure | now | baseline / bound | verdict |\n|---|---|---|---|---|")
    for goal, name, now, baseline, state in sorted(rows, key=lambda r: r[0]):
        print(f"| {goal} | {name} | {now} | {baseline} | {'**NOT met**' if state == 'NOT met' else state} |")
    met = sum(r[4] == "met" for r in rows)
    missed = sum(r[4] == "NOT met" for r in rows)
    print(f"{met} met, {missed} NOT met" + (f"; failed to run: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
