"""glibc's allocator kept from mapping and unmapping memory for every large buffer.

By default glibc serves an allocation above its mmap threshold (128 KiB at start, raised
dynamically up to 32 MiB) with a fresh mapping, and gives the top of the heap back to the kernel
once more than the trim threshold is free. An upload passes through several buffers of about
1 MiB per read (the socket, gunicorn's body reader, werkzeug's multipart decoder), so each one
cost page faults and zeroed pages again. Kept on the heap and never trimmed below 256 MiB, they
reuse pages already mapped: about 10% less web CPU per 1 MiB upload and 15% per 25 MiB in paired
`bench.upload` runs (docs/performance.md, "Fifth session"). The cost is memory kept: what was
freed stays mapped for the next request instead of being returned. It does not grow without
bound, but a worker holds more at rest: one gunicorn worker (4 threads) after 96 uploads of
100 KiB to 24 MiB, 4 at a time, settled at about 170 MiB RSS against about 125 MiB without.
mallopt(3): M_MMAP_THRESHOLD is -3, M_TRIM_THRESHOLD is -1.
"""
from __future__ import annotations

MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


def keep_large_buffers() -> bool:
    """Set glibc's mmap and trim thresholds for this process (inherited by its forks). True when
    glibc took both; False elsewhere (musl, macOS), where nothing changes."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(-3, MMAP_THRESHOLD_BYTES) and libc.mallopt(-1, TRIM_THRESHOLD_BYTES))
    except (ImportError, OSError, AttributeError):
        return False
