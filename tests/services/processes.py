"""Child processes read from /proc, never from `ps --ppid` or `pgrep -P`: CI runs the suite in a
PID namespace whose /proc numbers processes otherwise, where those listings find nothing."""
from __future__ import annotations

import glob


def children(proc_dir: str = "/proc/self") -> list[tuple[int, str, bytes, str]]:
    """The children of the process at `proc_dir`, sorted, as (pid, state letter, argv joined by
    NULs, its /proc dir). Each pid is the one this process knows (the last NSpid field). Raises
    AssertionError when the kernel does not list children (CONFIG_PROC_CHILDREN)."""
    found = []
    listings = glob.glob(f"{proc_dir}/task/*/children")
    assert listings, "this kernel does not list a process's children in /proc"
    for listing in listings:
        with open(listing) as f:
            for pid in f.read().split():
                try:
                    with open(f"/proc/{pid}/status") as f_status:
                        status = dict(line.split(":\t", 1) for line in f_status.read().splitlines() if ":\t" in line)
                    with open(f"/proc/{pid}/cmdline", "rb") as f_cmd:
                        args = f_cmd.read()
                except FileNotFoundError:  # reaped meanwhile
                    continue
                found.append((int(status["NSpid"].split()[-1]), status["State"][0], args, f"/proc/{pid}"))
    return sorted(found)


def children_of(pid: int) -> list[int]:
    """The pids of the children of `pid`, itself a child of this process ([] if it is not)."""
    for child, _state, _args, proc_dir in children():
        if child == pid:
            return [grandchild for grandchild, *_ in children(proc_dir)]
    return []
