"""Outside pass over the one CLAMD_URL parser (core.platform.settings.clamd_address) shared by the
settings check at start and the clamd client. Each test failed on the code it was written
against (3a250c9)."""
from __future__ import annotations

import socket
import threading

import pytest

from core.evidence.scanning import build_scanner
from core.platform.settings import Settings, SettingsError
# The browser tests' own Chromium fixture and skip mark (Debian's chromium, never a download).
from tests.browser.test_review_flow import browser, pytestmark as _needs_chromium  # noqa: F401  (fixture)
from tests.conftest import base_env


def _settings(tmp_path, url: str) -> Settings:
    return Settings.from_env({**base_env(str(tmp_path / "storage")), "AV_SCANNER": "clamd", "CLAMD_URL": url})


def _ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no ::1 on this machine")
def test_an_ipv6_clamd_url_that_starts_also_connects(tmp_path):
    """Input: CLAMD_URL=tcp://[::1]:<port>, a clamd-like server listening on ::1 (answers PONG).
    Seen: the settings accept the URL, the app starts, and every PING/scan fails with
    "[Errno -9] Address family for hostname not supported" (the client opens an AF_INET socket
    for an IPv6 literal): /readyz 503, uploads stay pending, while clamd is right there.
    Expected: a URL the start-up check accepts is one the client can reach (or, if IPv6 is not
    supported, refused at start with a SettingsError naming CLAMD_URL)."""
    listener = socket.socket(socket.AF_INET6)
    listener.bind(("::1", 0))
    listener.listen(4)
    listener.settimeout(5)
    port = listener.getsockname()[1]

    def serve():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            data = b""
            while not data.endswith(b"\0"):
                chunk = conn.recv(64)
                if not chunk:
                    return
                data += chunk
            if data == b"zPING\0":
                conn.sendall(b"PONG\0")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"tcp://[::1]:{port}"
        try:
            settings = _settings(tmp_path, url)
        except SettingsError as exc:
            assert "CLAMD_URL" in str(exc)
            return
        build_scanner(settings).check()  # raises ScannerFailure on this code
    finally:
        listener.close()
        thread.join(5)


def test_a_clamd_url_with_a_trailing_space_is_not_a_different_socket(tmp_path, clamd_server):
    """Input: CLAMD_URL="unix:///.../clamd.sock " (a trailing space, as pasted into a secret or an
    env file), clamd listening on that socket. Seen: the settings accept it, and the client
    connects to ".../clamd.sock " -- a path that does not exist -- so /readyz is 503 and every
    upload stays pending; the same value as tcp:// ("tcp://127.0.0.1:3310 ") is refused at start
    with "needs a host and a port". SMTP_URL, PUBLIC_BASE_URL, MAIL_FROM are stripped.
    Expected: either the value is stripped (and the scanner reaches clamd) or it is refused at
    start with a SettingsError naming CLAMD_URL -- not accepted as a different path."""
    url = clamd_server.unix_url + " "
    try:
        settings = _settings(tmp_path, url)
    except SettingsError as exc:
        assert "CLAMD_URL" in str(exc)
        return
    build_scanner(settings).check()  # ScannerFailure: No such file or directory


def _unix_to_tcp_bridge(tcp_port: int, tmp_path) -> tuple[str, socket.socket]:
    """A unix socket that forwards bytes to clamd's TCP port, as `socat UNIX-LISTEN:... TCP:clamd:3310`
    or a socket forwarded from another host does: bytes pass, SCM_RIGHTS ancillary data cannot."""
    path = tmp_path / "bridge.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(8)

    def pump(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def serve():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", tcp_port))
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"unix://{path}", listener


def test_a_ready_scanner_behind_a_unix_socket_proxy_scans_files(tmp_path, clamd_server):
    """Input: CLAMD_URL=unix:///.../bridge.sock where the socket is a byte proxy to a real clamd
    (socat, an SSH-forwarded socket, a sidecar): PING and INSTREAM pass through, a passed
    descriptor cannot. A clean 5 KB upload on disk.
    Seen: the readiness check (PING -> PONG) passes, so /readyz is 200, yet every scan of a file
    on disk fails with "clamd reported an error: No file descriptor received." and the upload
    stays pending for ever; INSTREAM through the same socket would have worked. Only clamd's
    UNKNOWN COMMAND to FILDES falls back to INSTREAM.
    Expected: while the scanner reports ready, a clean file on disk scans clean (fall back to
    INSTREAM when clamd did not receive the descriptor), or readiness fails."""
    import tempfile

    url, listener = _unix_to_tcp_bridge(clamd_server.port, tmp_path)
    try:
        scanner = build_scanner(_settings(tmp_path, url))
        scanner.check()  # /readyz's scanner probe: passes
        upload = tempfile.TemporaryFile()
        upload.write(b"a clean evidence file\n" * 250)
        upload.seek(0)
        result = scanner.scan(upload)  # ScannerFailure("error", "... No file descriptor received.")
        assert result.state == "clean"
    finally:
        listener.close()


# --- The upload and review pages at a phone's width (390 px), in Debian's headless Chromium. ---
# A file name as phones and chat apps write them: long, and joined by underscores (no place a
# browser may break the line).
PHONE_NAME = "Screenshot_20261130_102211_com.google.android.apps.docs_attendance.png"
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def _page_width(page) -> int:
    """The document's width in CSS px. On a mobile viewport Chromium widens the layout viewport to
    the content (window.innerWidth grows with it), so compare with the phone's 390 px, not with
    innerWidth: tests/browser's _no_sideways_scroll compares the two and passes on a 689 px page."""
    return page.evaluate("() => document.scrollingElement.scrollWidth")


def _upload_on_phone(browser, base: str, files: list) -> tuple[object, str]:
    """Sign in as the uploader on a 390 px phone, send `files` for EXPLORE; (page, flash text)."""
    from tests.browser.test_corrections_phone import PHONE
    from tests.browser.test_review_flow import _flash, _sign_in
    from tests.evidence_support import yesterday

    page = browser.new_context(**PHONE).new_page()
    _sign_in(page, base, "owner@example.com")
    page.goto(f"{base}/submissions/new")
    assert _page_width(page) <= 390
    page.get_by_label("Activity").select_option("EXPLORE")
    page.get_by_label("Session date").fill(yesterday().isoformat())
    page.get_by_label("Evidence files").set_input_files([str(f) for f in files])
    page.get_by_role("button", name="Send for review").click()
    page.wait_for_load_state()
    return page, _flash(page)


@pytest.fixture
def base(make_app, clamd_server):
    """The app served with its people, as in production (CSRF on), scanning by clamd over its unix
    socket (FILDES), in the request; yields its base URL."""
    from tests.conftest import serve
    from tests.test_portal_support import people

    app = make_app(flask_overrides={"WTF_CSRF_ENABLED": True}, AV_SCANNER="clamd",
                   CLAMD_URL=clamd_server.unix_url, INLINE_SCAN_MAX_MB="25")
    people(app)
    with serve(app) as url:
        yield url


def _png(tmp_path, name: str):
    """A clean PNG on disk under `name`, for a file chooser."""
    from tests.test_portal_support import png

    picture = tmp_path / name
    picture.write_bytes(png())
    return picture


@_needs_chromium
def test_the_uploaders_submission_page_fits_a_phone_with_a_phone_file_name(base, browser, tmp_path):
    """Input: on a 390 px phone, upload one clean PNG named
    Screenshot_20261130_102211_com.google.android.apps.docs_attendance.png.
    Seen: the page the upload lands on (/submissions/<id>) is 689 px wide: the file name in
    "Files" does not wrap, so the phone shows the page zoomed out / scrolling sideways (the
    reviewer's reason box on the same page does wrap such names).
    Expected: no wider than the phone's 390 px."""
    picture = _png(tmp_path, PHONE_NAME)
    page, flash = _upload_on_phone(browser, base, [picture])
    assert "/submissions/" in page.url and "sent" in flash, flash
    assert _page_width(page) <= 390, f"{page.url} is {_page_width(page)} px wide on a 390 px phone"


@_needs_chromium
def test_the_review_page_fits_a_phone_with_a_reused_phone_file_name(base, browser, tmp_path):
    """Input: the same clean PNG (named as a phone names it, see PHONE_NAME) uploaded twice from a
    390 px phone; a reviewer opens the second submission on a 390 px phone.
    Seen: /review/<id> is 861 px wide: the "Reused evidence" heading (the file name) and the
    "Earlier submissions" line do not wrap, while the Files card on the same page does.
    Expected: no wider than the phone's 390 px."""
    from tests.browser.test_corrections_phone import PHONE
    from tests.browser.test_review_flow import _sign_in

    picture = _png(tmp_path, PHONE_NAME)
    _upload_on_phone(browser, base, [picture])
    page, flash = _upload_on_phone(browser, base, [picture])
    second = page.url.rsplit("/", 1)[-1]
    assert second.isdigit(), page.url
    reviewer = browser.new_context(**PHONE).new_page()
    _sign_in(reviewer, base, "reviewer@example.com")
    reviewer.goto(f"{base}/review/{second}")
    assert "Reused evidence" in reviewer.content()
    assert _page_width(reviewer) <= 390, f"{reviewer.url} is {_page_width(reviewer)} px wide on a 390 px phone"


@_needs_chromium
def test_a_file_refused_in_the_request_is_not_announced_as_being_checked(base, browser, tmp_path):
    """Input: on a 390 px phone, a submission of one clean PNG and one CSV that is the EICAR test
    file (clamd over the unix socket finds it while the request is still open: inline scan).
    Seen: the page answers "Submission 1 sent. We are checking the files; it goes to review after
    that." right above "Status: Rejected" and the reason "... contains malware": the message says
    the opposite of what already happened.
    Expected: the confirmation does not promise a check and a review for a submission already
    rejected (it says the file was refused, or at least does not say it goes to review)."""
    picture = _png(tmp_path, "whiteboard.png")
    sheet = tmp_path / "attendance.csv"
    sheet.write_bytes(EICAR)
    page, flash = _upload_on_phone(browser, base, [picture, sheet])
    body = page.locator("main").inner_text()
    assert "Rejected" in body and "malware" in body, body[:600]
    assert "goes to review" not in flash and "checking the files" not in flash, flash


@_needs_chromium
def test_a_file_error_on_the_upload_page_stays_next_to_the_field_on_a_phone(base, browser, tmp_path):
    """Input: on a 390 px phone, upload a clean PNG named PHONE_NAME and a text file named
    WhatsApp_Image_2026_11_30_at_10_22_11_PM_attendance.png (not a PNG).
    Seen: the error is next to "Evidence files" (good), but the page is wider than the phone:
    the error's file name and the "Already uploaded from your last try" box (the kept PNG's name)
    do not wrap, so the error runs off the right edge.
    Expected: the error next to the field, and the page no wider than 390 px."""
    picture = _png(tmp_path, PHONE_NAME)
    fake = tmp_path / "WhatsApp_Image_2026_11_30_at_10_22_11_PM_attendance.png"
    fake.write_bytes(b"not a picture at all\n" * 20)
    page, flash = _upload_on_phone(browser, base, [picture, fake])
    assert "/submissions/new" in page.url and "need attention" in flash, (page.url, flash)
    error = page.locator(".field.has-error", has=page.locator('input[name="files"]')).locator("p.error")
    assert fake.name in error.inner_text()
    assert _page_width(page) <= 390, f"the upload form with an error is {_page_width(page)} px wide on a 390 px phone"


@pytest.mark.parametrize("suffix", ["%00junk", "%00"])
def test_a_unix_clamd_url_with_an_encoded_nul_is_refused_at_start(tmp_path, clamd_server, suffix):
    """Input: CLAMD_URL=unix:///.../clamd.sock%00junk. Seen: accepted at start (unquote makes the
    path ".../clamd.sock\\0junk"), and the kernel cuts the socket path at the NUL, so the app
    connects to .../clamd.sock -- a socket the URL does not name; with %00 elsewhere in the path it
    goes to a directory and fails. No file name can hold a NUL.
    Expected: refused at start with a SettingsError naming CLAMD_URL."""
    with pytest.raises(SettingsError, match="CLAMD_URL"):
        _settings(tmp_path, clamd_server.unix_url + suffix)
