"""How many active client connections each web process holds, in memory every gunicorn process
shares.

A kept-alive connection stays with the process that accepted it, so the split of busy clients
between processes sets how long each waits: 9 against 7 of 16 busy uploaders put the 9's requests
behind a queue an eighth longer than an even split would (docs/performance.md, "Eleventh
session"). When every process is busy, the one with the fewest active connections takes the next
one (core/platform/gunicorn_worker.py), as nginx's `least_conn` balances between upstreams. A
connection idle in keep-alive for a while (a browser's spare, a client that has finished) does not
count: it brings no work.

The board is an anonymous shared mapping made in gunicorn's master before any worker forks
(deploy/gunicorn.conf.py); the master gives each worker a slot before forking it and frees the slot
when it reaps the worker. A worker writes only its own slot. Values are whole 64-bit words, which
x86-64 and arm64 read and write in one piece, so no lock is needed for a figure that is only a hint.
Each holds a worker's active connections times two, plus one while all its threads are busy; FREE
(-1) marks a slot no worker holds.
"""
from __future__ import annotations

import mmap

FREE = -1  # a slot no live worker holds


class ConnectionBoard:
    """`slots` counters of active connections, shared across fork(). Slot numbers are 0-based."""

    def __init__(self, slots: int = 64):
        if slots < 1:
            raise ValueError("a connection board needs at least one slot")
        self._map = mmap.mmap(-1, slots * 8)  # MAP_SHARED | MAP_ANONYMOUS: fork()ed children share it
        self._values = memoryview(self._map).cast("q")
        for slot in range(slots):
            self._values[slot] = FREE

    def claim(self) -> int | None:
        """A free slot, now marked as holding no connection and a free thread; None when every
        slot is taken (the worker then shares without the board). Called by gunicorn's master
        only (pre_fork)."""
        for slot, value in enumerate(self._values):
            if value == FREE:
                self._values[slot] = 0
                return slot
        return None

    def release(self, slot: int | None) -> None:
        """Free `slot` (a reaped worker's; None is ignored). Called by the master only (child_exit)."""
        if slot is not None:
            self._values[slot] = FREE

    def publish(self, slot: int, connections: int, busy: bool) -> None:
        """Record that the worker at `slot` holds `connections` active connections, and whether
        every one of its threads is busy."""
        self._values[slot] = connections * 2 + busy

    def fewest(self, slot: int) -> bool:
        """True when no other live worker has a free thread, and the worker at `slot` holds fewer
        active connections than every other, or as few as the fewest and has the lowest slot
        among them (a tie goes to one worker, not to whichever wakes first)."""
        mine = self._values[slot] >> 1
        for other, value in enumerate(self._values):
            if other == slot or value == FREE:
                continue
            if not value & 1:  # a free thread there: that worker takes it
                return False
            connections = value >> 1
            if connections < mine or (connections == mine and other < slot):
                return False
        return True

    def excess(self, slot: int) -> int:
        """How many more active connections the worker at `slot` holds than the live worker with
        the fewest (0 when it is the only one or the fewest)."""
        mine = self._values[slot] >> 1
        others = [value >> 1 for other, value in enumerate(self._values) if other != slot and value != FREE]
        return max(0, mine - min(others)) if others else 0
