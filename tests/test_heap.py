"""core.platform.heap: after keep_large_buffers(), freed request-sized buffers (a few hundred KiB
to 2 MiB, now and then a 40 MiB one, in the main thread and in another, as gunicorn's threads
make them) are reused from the heap instead of being mapped and faulted in afresh each time."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = r"""
import random, resource, sys, threading
if sys.argv[1] == "keep":
    from core.platform.heap import keep_large_buffers
    assert keep_large_buffers()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def requests():
    rnd = random.Random(1)
    for _ in range(200):
        held = [bytearray(rnd.randint(200 << 10, 2 << 20)) for _ in range(4)]
        big = bytearray(40 << 20) if rnd.random() < 0.05 else b""
        del held, big
requests()  # the first ones map and fault in either way
before = faults()
thread = threading.Thread(target=requests)
thread.start()
thread.join()
requests()
print(faults() - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, cwd=ROOT)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_buffers_reuse_the_heap_instead_of_new_mappings():
    default, kept = page_faults("default"), page_faults("keep")
    assert default > 100_000  # glibc's default: fresh pages for most buffers (about 330,000 seen)
    assert kept * 5 < default  # kept: about 11,000 seen
