"""CPU per file, the app against its baseline, in interleaved rounds (bench/upload.py's goal 1).

One back-to-back pass per side used to decide the verdict, and the baseline's CPU per file moved
about 2x between runs of the same code: on a shared 2-core machine a phase's CPU cost depends on
what the neighbours do meanwhile (caches, frequency), and the two sides ran at different moments.
Here both sides are warmed first (clamd's threads, the storage folders, the page cache), then
measured in several rounds, each an app batch and a baseline batch back to back, in alternating
order (app first, then baseline first), with dirty pages written out before every batch so each
starts from the same writeback state. The verdict is the ratio of the two sides' medians; every
round's figures are kept so the spread can be printed beside it.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.cpu import Meter

CPU_GROUPS = ("web", "workers", "clamd", "postgresql", "redis", "client")


def measured(meter: Meter, work: Callable[[], object]) -> dict[str, float]:
    """Run work(); return the CPU seconds each process group used meanwhile ("client" is this
    process, timed apart from the snapshots it takes)."""
    before = meter.snapshot()
    cpu = time.process_time()
    work()
    cpu = time.process_time() - cpu
    used = Meter.used(before, meter.snapshot())
    used["client"] = cpu
    return used


@dataclass
class Side:
    """One side's rounds: per round, CPU ms per file by group."""
    rounds: list[dict[str, float]] = field(default_factory=list)

    def totals(self) -> list[float]:
        return [sum(r.values()) for r in self.rounds]

    def median(self) -> float:
        return statistics.median(self.totals())

    def group_medians(self) -> dict[str, float]:
        return {g: statistics.median(r.get(g, 0.0) for r in self.rounds) for g in CPU_GROUPS}


@dataclass
class Comparison:
    count: int
    app: Side
    baseline: Side

    def ratio(self) -> float:
        """Median app CPU per file over median baseline CPU per file."""
        base = self.baseline.median()
        return self.app.median() / base if base else float("inf")

    def round_ratios(self) -> list[float]:
        return [a / b if b else float("inf") for a, b in zip(self.app.totals(), self.baseline.totals())]


Batch = Callable[[int], Callable[[], object]]


def compare(meter: Meter, app_batch: Batch, baseline_batch: Batch, count: int, rounds: int,
            warm: int = 2) -> Comparison:
    """`app_batch(n)` / `baseline_batch(n)` prepare `n` new files (request bodies encoded, as
    the baseline's bytes are ready in memory) and return the work that handles them back to
    back; only that work is counted. `warm` files of each side go first, uncounted. Returns
    each round's CPU ms per file per group, for `rounds` rounds of `count` files per side."""
    app_batch(warm)()
    baseline_batch(warm)()
    app, base = Side(), Side()
    for i in range(rounds):
        order = ((app, app_batch), (base, baseline_batch))
        for side, batch in (order if i % 2 == 0 else order[::-1]):
            # The batch before left dirty pages (stored files, clamd's temporary copies); the
            # kernel writes them out when it likes, which would land in one side's count more
            # than the other's. Written out now, outside any count.
            work = batch(count)
            os.sync()
            used = measured(meter, work)
            side.rounds.append({g: used.get(g, 0.0) * 1000 / count for g in CPU_GROUPS})
    return Comparison(count, app, base)


def print_table(comparisons: dict[int, Comparison]) -> None:
    print(f"\nCPU ms per file, back to back, median of the rounds {'':>3}" + "".join(f"{g:>11}" for g in CPU_GROUPS)
          + f"{'total':>9}  {'min-max total':>14}")
    for mb, c in comparisons.items():
        for name, side in (("app", c.app), ("baseline", c.baseline)):
            per, totals = side.group_medians(), side.totals()
            print(f"{mb:>5} MiB x {c.count:<3} x {len(totals)} rounds {name:<17}"
                  + "".join(f"{per[g]:>11.1f}" for g in CPU_GROUPS)
                  + f"{side.median():>9.1f}  {min(totals):>6.1f}-{max(totals):<7.1f}")
        ratios = c.round_ratios()
        print(f"{'':>8}ratio of medians {c.ratio():.2f}x; each round's ratio "
              + ", ".join(f"{r:.2f}" for r in ratios))
    print("(each group's column is its own median, so the columns need not add up to the total's median; "
          "PostgreSQL includes its background writers; a process's own CPU is read to the nanosecond)")
