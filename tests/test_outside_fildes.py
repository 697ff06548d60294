"""Outside pass over scanning by descriptor (FILDES) on a unix CLAMD_URL. Each test failed on the
code it was written against (0aced21); none is a fail-open: what they show is an operator being
misled."""
from __future__ import annotations

import array
import os
import socket
import tempfile

import pytest

from core.evidence.clamd_client import ClamdConnection, ScannerFailure
from core.platform.settings import Settings, SettingsError
from tests.conftest import base_env
from tests.services.fake_clamd import fake_clamd


def _take_the_descriptor_then_hang_up(conn) -> None:
    """A clamd that takes FILDES and its descriptor, then dies before answering (as a clamd
    killed mid-scan does)."""
    command = b""
    while not command.endswith(b"\0"):
        command += conn.recv(1)
    fds = array.array("i")
    _, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_LEN(fds.itemsize))
    for _, _, data in ancillary:
        fds.frombytes(data[:fds.itemsize])
    for fd in fds:
        os.close(fd)


def test_clamd_dying_during_a_descriptor_scan_does_not_blame_stream_max_length():
    """Input: a 3 MiB file on disk, CLAMD_URL unix://, clamd gone after taking the descriptor.
    Seen: the failure (logged as the reason the file stays pending) tells the operator to raise
    StreamMaxLength above MAX_UPLOAD_MB -- a setting FILDES never meets (clamd reads the file
    itself; no stream is sent). Expected: a `closed` failure without that advice."""
    with fake_clamd(_take_the_descriptor_then_hang_up, unix=True) as url:
        f = tempfile.TemporaryFile()
        f.write(b"x" * (3 * 1024 * 1024))
        f.seek(0)
        with pytest.raises(ScannerFailure) as info:
            ClamdConnection(url, timeout=5).scan(f)
    assert info.value.kind == "closed"
    assert "StreamMaxLength" not in str(info.value), str(info.value)


@pytest.mark.parametrize("url", [
    "unix://",                            # no path at all
    "unix://clamd.sock",                  # a relative path: urlparse takes it as a host, path ""
    "unix://run/clamav/clamd.ctl",        # two slashes: "run" silently dropped, connects to /clamav/clamd.ctl
])
def test_a_unix_clamd_url_without_an_absolute_path_is_refused_at_start(tmp_path, url):
    """Input: CLAMD_URL as above (AV_SCANNER=clamd). Seen: the settings load; the app starts, every
    scan fails (or goes to another path than the one written) and files stay pending until someone
    reads /readyz. A tcp:// URL without host or port is refused at start (SettingsError); a unix://
    one should be too when it has no absolute socket path."""
    env = {**base_env(str(tmp_path / "storage")), "AV_SCANNER": "clamd", "CLAMD_URL": url}
    with pytest.raises(SettingsError, match="CLAMD_URL"):
        Settings.from_env(env)


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:abc", "tcp://127.0.0.1:99999", "tcp://:3310"])
def test_a_tcp_clamd_url_with_a_bad_port_or_no_host_is_refused_at_start(tmp_path, url):
    """The same kind for tcp://: a port that is not a number or past 65535 raised urllib's own
    ValueError out of Settings.from_env (a traceback at start, no setting named)."""
    env = {**base_env(str(tmp_path / "storage")), "AV_SCANNER": "clamd", "CLAMD_URL": url}
    with pytest.raises(SettingsError, match="CLAMD_URL"):
        Settings.from_env(env)
