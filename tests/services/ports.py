"""One loopback port helper for the tests: a port nothing listens on right now, to start a server
on, or to point a client at a dead endpoint."""
from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
