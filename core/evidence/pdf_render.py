"""The PDF renderer's child process: `python -m core.evidence.pdf_render IN OUT_DIR MAX_PAGES MAX_PX [FIRST_PAGE]`.

Runs in a process of its own, started by core.evidence.previews with an address-space limit
(RLIMIT_AS), a CPU limit, an output-size limit and a wall-clock timeout, and an environment
without the app's settings or secrets: whatever a hostile PDF does to the renderer (pdfium, via
pypdfium2, built without JavaScript or XFA support) ends with this process. Imports nothing of the
app. Writes page-F.png ... page-N.png (pages FIRST_PAGE, default 1, to MAX_PAGES, each at most
MAX_PX on its longer side) into OUT_DIR and prints one JSON line: {"pages": N, "page_count": TOTAL}, or
{"error": "reason"} with exit status 3 when the document cannot be opened.

`python -m core.evidence.pdf_render --serve` is the same renderer kept warm (core.evidence.
render_server starts it): it imports pdfium and Pillow once, then hands each request line on stdin
to a child forked ahead of it (its heap already faulted in), which applies the limits, renders one
document as above and exits, and answers one JSON line with the child's exit status and output. The server itself never opens a document, so
every PDF is still parsed in a fresh process of its own under the same limits; what the fork saves
is the interpreter start and the imports (~100-150 ms a PDF, more than rendering a page).
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import sys

from core.platform.heap import keep_large_buffers

UNREADABLE_EXIT = 3
MAX_SCALE = 2.0  # 144 dpi: enough to read body text; tiny pages are not blown up past it


def render(src: str, out_dir: str, max_pages: int, max_px: int, first_page: int = 1) -> dict:
    """Pages first_page..max_pages (1-based) into out_dir. {"pages": the last page written (pages
    before first_page count as written), "page_count": N} or {"error": reason}."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(src)
    except pdfium.PdfiumError as exc:
        text = str(exc).lower()
        return {"error": "password-protected PDF" if "password" in text else "not a readable PDF"}
    try:
        total = len(pdf)
        made = first_page - 1
        for index in range(first_page - 1, min(total, max_pages)):
            page = pdf[index]
            width, height = page.get_size()  # points; a hostile MediaBox may be 0 or huge
            if width <= 0 or height <= 0:
                break
            scale = min(MAX_SCALE, max_px / width, max_px / height)
            image = page.render(scale=scale).to_pil()
            image.save(os.path.join(out_dir, f"page-{index + 1}.png"), "PNG", optimize=False)
            made += 1
            page.close()
        return {"pages": made, "page_count": total}
    finally:
        pdf.close()


def main(argv: list[str]) -> int:
    if argv == ["--serve"]:
        return serve()
    src, out_dir, max_pages, max_px = argv[0], argv[1], int(argv[2]), int(argv[3])
    result = render(src, out_dir, max_pages, max_px, int(argv[4]) if len(argv) > 4 else 1)
    sys.stdout.write(json.dumps(result) + "\n")
    return UNREADABLE_EXIT if "error" in result else 0


def apply_limits(memory_mb: int, seconds: int, max_bytes: int) -> None:
    """The renderer's walls, set in the process about to parse a PDF: address space (pdfium
    aborts past it), CPU seconds (SIGXCPU), bytes per written file (SIGXFSZ), no core dumps."""
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds + 1, seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


OUTPUT_MAX = 64 * 1024  # of the child's stdout and stderr, sent back


def serve() -> int:
    """Answer render requests until stdin closes (the app process that started it went away).
    Request: {"id", "src", "out", "max_pages", "max_px", "seconds", "memory_mb", "max_bytes"}.
    Answer: {"id", "returncode": int (negative: killed by that signal), "stdout", "stderr"} or
    {"id", "timeout": true} once the child ran `seconds` of wall-clock time (it is killed).

    Each request goes to a spare child forked after the previous answer, whose heap is already
    faulted in while it waits: a child forked on demand paid the fork and ~15 ms of first-touch
    page faults for its bitmaps, and the server's answer then waited for its exit as well
    (bench/previews.py, docs/performance.md). The child reports its exit code on a pipe of its
    own just before it exits; the server answers on that and reaps it afterwards."""
    import pypdfium2  # noqa: F401  (loaded before any fork: the children inherit it)
    from PIL import Image, PngImagePlugin  # noqa: F401

    _warm_up()
    spare = _Spare()
    for line in sys.stdin:
        request = json.loads(line)
        if not spare.waiting():  # killed while it waited: an innocent PDF must not fail for that
            spare.reap(0)
            spare = _Spare()
        answer = spare.render(request)
        sys.stdout.write(json.dumps({"id": request["id"], **answer}) + "\n")
        sys.stdout.flush()
        spare.reap(float(request["seconds"]))
        spare = _Spare()
    spare.reap(0)
    return 0


def _warm_up() -> None:
    """Render a page of our own (text in the standard fonts) once, so pdfium's lazy set-up (the
    system font list it maps the 14 standard fonts onto, its caches) is done in the server and
    inherited by every child, not redone per PDF: ~50 ms a page here. No user document is involved."""
    import tempfile

    ops = b"BT /F1 12 Tf 10 50 Td (Warm) Tj ET BT /F2 12 Tf 10 30 Td (up) Tj ET"
    bodies = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
              b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 80] /Contents 4 0 R /Resources << /Font"
              b" << /F1 5 0 R /F2 6 0 R >> >> >>",
              b"<< /Length %d >>\nstream\n%s\nendstream" % (len(ops), ops),
              b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
              b"<< /Type /Font /Subtype /Type1 /BaseFont /Times-Roman >>"]
    pdf, offsets = bytearray(b"%PDF-1.7\n"), []
    for number, body in enumerate(bodies, 1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(bodies) + 1, xref)
    with tempfile.TemporaryDirectory(prefix="pdf-warm-") as out:
        path = os.path.join(out, "warm.pdf")
        with open(path, "wb") as fh:
            fh.write(pdf)
        render(path, out, 1, 200)


def _die_with_parent() -> None:
    """Linux's PR_SET_PDEATHSIG: this child is killed when the server that forked it dies, rather
    than rendering on, unwatched, until its CPU limit. Elsewhere, nothing."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


PREFAULT_BYTES = 32 * 1024 * 1024  # a one-page render's bitmaps, decoded images and PNG buffers


class _Spare:
    """A child forked ahead of its request. It never holds the server's own pipes (a document
    cannot write an answer of its own), dies with the server (PR_SET_PDEATHSIG), faults its heap
    in, then waits for one request on a private pipe; its output goes to files in the request's
    out dir, as a one-shot renderer's would."""

    def __init__(self) -> None:
        server = os.getpid()
        requests_r, self._requests = os.pipe()
        self._done, done_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            os.close(self._requests)
            os.close(self._done)
            _spare_main(requests_r, done_w, server)
        os.close(requests_r)
        os.close(done_w)
        self._pidfd = os.pidfd_open(self.pid)
        self._status: int | None = None

    def waiting(self) -> bool:
        return not select.select([self._pidfd], [], [], 0)[0]

    def render(self, request: dict) -> dict:
        out_dir = request["out"]
        paths = {name: os.path.join(out_dir, f".renderer-{name}") for name in ("stdout", "stderr")}
        try:
            os.write(self._requests, (json.dumps(request) + "\n").encode())
        except BrokenPipeError:
            pass  # it died while waiting (killed by hand): the exit status below says how
        seconds = float(request["seconds"])
        ready = select.select([self._pidfd, self._done], [], [], seconds)[0]
        code = _reported_code(self._done) if self._done in ready else None
        if code is None:
            if not ready and not select.select([self._pidfd], [], [], 0)[0]:
                os.kill(self.pid, signal.SIGKILL)
                self._wait()
                for path in paths.values():  # the caller's folder may outlive this request
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                return {"timeout": True}
            code = os.waitstatus_to_exitcode(self._wait())
        answer = {"returncode": code}
        for name, path in paths.items():
            try:
                with open(path, "rb") as fh:
                    answer[name] = fh.read(OUTPUT_MAX).decode("utf-8", "replace")
                os.unlink(path)
            except OSError:
                answer[name] = ""
        return answer

    def reap(self, seconds: float) -> None:
        """Wait for the child to exit (it said it would); past `seconds`, kill it. Closes the pipes."""
        try:
            if self._status is None:
                if not select.select([self._pidfd], [], [], seconds)[0]:
                    os.kill(self.pid, signal.SIGKILL)
                self._wait()
        finally:
            for fd in (self._requests, self._done, self._pidfd):
                os.close(fd)

    def _wait(self) -> int:
        if self._status is None:
            self._status = os.waitpid(self.pid, 0)[1]
        return self._status


def _reported_code(fd: int) -> int | None:
    """The exit code a child wrote on its done pipe ("0\n"), or None if it wrote nothing usable."""
    try:
        text = os.read(fd, 16)
    except OSError:
        return None
    return int(text) if text.strip().isdigit() and int(text) < 256 else None


def _spare_main(requests_r: int, done_w: int, server: int) -> None:
    code = 70
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # off the server's pipes before anything else
            os.dup2(null, fd)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        _die_with_parent()
        if os.getppid() != server:  # the server died before that took hold
            os._exit(code)
        _prefault_heap()
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(requests_r, 65536)
            if not chunk:  # the server went away without a request
                os._exit(0)
            line += chunk
        request = json.loads(line)
        out_dir = request["out"]
        os.dup2(os.open(os.path.join(out_dir, ".renderer-stdout"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
        os.dup2(os.open(os.path.join(out_dir, ".renderer-stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
        apply_limits(int(request["memory_mb"]), int(request["seconds"]), int(request["max_bytes"]))
        code = main([request["src"], out_dir, str(request["max_pages"]), str(request["max_px"]),
                     str(request.get("first_page", 1))])
    except MemoryError:
        os.write(2, b"MemoryError\n")
    except BaseException as exc:  # noqa: BLE001 -- reported as a failed render
        os.write(2, f"{type(exc).__name__}: {exc}\n".encode())
    finally:
        try:
            sys.stdout.flush()
            os.write(done_w, b"%d\n" % code)
        finally:
            os._exit(code)


def _prefault_heap() -> None:
    """glibc only: keep allocations below 64 MiB on the heap and never trim it
    (core.platform.heap), then touch PREFAULT_BYTES of it once, so the render reuses pages already
    mapped. Elsewhere, nothing."""
    if not keep_large_buffers():
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        block = libc.malloc(PREFAULT_BYTES)
        if block:
            ctypes.memset(block, 0, PREFAULT_BYTES)
            libc.free(block)
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
