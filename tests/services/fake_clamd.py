"""A socket server that plays clamd for answers a real clamd gives only when something is wrong."""
from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def fake_clamd(behaviour, *, unix: bool = False) -> Iterator[str]:
    """One connection at a time, on loopback TCP or (unix=True) a unix socket in a temporary
    directory; behaviour(conn) plays clamd's part. Yields the CLAMD_URL to use."""
    if unix:
        path = Path(tempfile.mkdtemp(prefix="fake-clamd-")) / "clamd.sock"
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
        url = f"unix://{path}"
    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                try:
                    behaviour(conn)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        if unix:
            path.unlink(missing_ok=True)
            path.parent.rmdir()
