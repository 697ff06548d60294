"""Previews for reviewers, safe by construction: everything shown is an image this server made, or
escaped text. Never the evidence itself inline.

- PDF: the first MAX_PDF_PAGES pages rendered to PNG by pdfium (pypdfium2) in a child process
  (core.evidence.pdf_render) with an address-space limit, a CPU limit, an output-size limit and a
  wall-clock timeout, and no app settings in its environment: a fresh fork, per PDF, of a warm
  renderer process (core.evidence.render_server), or a one-shot process if that one fails. The job itself runs in the media
  queue's forked work horse (jobs/worker.py), so this is a second wall around the renderer.
- Images: a larger EXIF-free JPEG (core.evidence.images.make_thumbnail at LARGE_PX), plus the
  perceptual hash used to find near-duplicates (core.evidence.duplicates).
- CSV: the first rows as data (rendered by the portal with autoescaping); cells a spreadsheet would
  run as a formula are marked (core.evidence.csv_preview). Kept in the file's row, not as an object.

Objects live under previews/<user_id>/<activity_code>/<file_uuid>/ (CONTRACT "Storage layout");
retention deletes them, and a CSV's table, with their file. Every run ends in a stored outcome: preview_state `made`,
or `failed` with preview_reason; only a storage or database failure raises (RQ retries).
"""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from rq.timeouts import JobTimeoutException

from core.platform import audit
from core.platform.db import db
from core.platform.errors import ValidationError
from core.platform.models import EvidenceFile
from core.platform.services import services
from core.evidence import duplicates, pdf_render, render_server
from core.evidence.csv_preview import CSV_HEAD_BYTES, csv_table
from core.evidence.images import make_thumbnail
from core.evidence.scan_jobs import IMAGE_EXTS

log = logging.getLogger(__name__)

MAX_PDF_PAGES = 5
PAGE_PX = 1400  # longer side of a rendered PDF page
LARGE_PX = 1600  # longer side of an image's enlarged view
PAGE_MAX_BYTES = 8 * 1024 * 1024  # per rendered page; the child's RLIMIT_FSIZE enforces it
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def preview_prefix(file: EvidenceFile) -> str:
    return f"previews/{file.user_id}/{file.activity_code}/{file.uuid}/"


def page_key(file: EvidenceFile, page: int) -> str:
    """The stored image for preview page `page` (1-based): PNG pages of a PDF, one JPEG for an image."""
    if file.ext in IMAGE_EXTS:
        return preview_prefix(file) + "large.jpg"
    return preview_prefix(file) + f"page-{page}.png"


def table_key(file: EvidenceFile) -> str:
    """Where a CSV's table was stored before migration 0013 put it in the row (read_table)."""
    return preview_prefix(file) + "table.json"


@dataclass
class Outcome:
    state: str  # made | failed
    reason: str | None = None
    pages: int = 0
    page_count: int = 0  # a PDF's pages in all (the renderer reads it)
    phash: int | None = None
    objects: dict[str, tuple[bytes, str]] | None = None  # key -> (bytes, content type)
    table: dict | None = None  # a CSV's table, kept in the row (core.evidence.csv_preview)


# ---- CSV (the rules: core.evidence.csv_preview) ----------------------------------------------

def csv_outcome(data: bytes, size: int) -> Outcome:
    """The preview of a CSV of `size` bytes from its first bytes `data`: made with its table
    (csv_preview.csv_table's shape, recorded in the row), or failed when it has no rows."""
    table = csv_table(data, complete=size <= len(data))
    if not table["rows"]:
        return Outcome("failed", "The file has no rows to show.")
    return Outcome("made", pages=1, table=table)


def read_table(file: EvidenceFile) -> dict | None:
    """A made CSV preview's table (csv_preview.csv_table's shape), or None. Tables made before
    migration 0013 are objects (table_key) and are read from storage."""
    from core.storage.base import ObjectNotFound

    if file.ext != "csv" or file.preview_state != "made":
        return None
    if file.preview_table is not None:
        return file.preview_table
    try:
        data = b"".join(services().storage.iter_chunks(table_key(file)))
    except ObjectNotFound:  # removed by hand or by retention meanwhile: the page shows no table
        return None
    return json.loads(data)


# ---- images ---------------------------------------------------------------------------------

def _image_outcome(file: EvidenceFile, spool) -> Outcome:
    from PIL import Image

    try:
        large = make_thumbnail(spool, max_px=LARGE_PX)
    except ValidationError as exc:
        if isinstance(exc.__cause__, JobTimeoutException):
            raise exc.__cause__ from None  # RQ stopped a slow decode: a failed job, not a bad image
        return Outcome("failed", exc.message)
    with Image.open(io.BytesIO(large)) as im:  # our own JPEG: the pixels the reviewer sees
        value = None if duplicates.too_plain(im) else duplicates.image_phash(im)
    return Outcome("made", pages=1, phash=value, objects={page_key(file, 1): (large, "image/jpeg")})


# ---- PDF ------------------------------------------------------------------------------------

def _limits(memory_mb: int, seconds: int):
    def apply() -> None:  # runs in the child between fork and exec
        pdf_render.apply_limits(memory_mb, seconds, PAGE_MAX_BYTES)
    return apply


def render_pdf(path: str, out_dir: str, *, seconds: int, memory_mb: int, max_pages: int = MAX_PDF_PAGES,
               max_px: int = PAGE_PX, first_page: int = 1) -> Outcome:
    """Render pages first_page..max_pages of the PDF at `path` into `out_dir` (page-N.png) in a
    limited child process. Returns Outcome made (pages: the last page made, at least first_page)
    or failed with a reason a reviewer can read; the objects are filled in by the caller. Never
    raises for anything the PDF does."""
    try:
        try:
            done = render_server.SERVER.render(path, out_dir, max_pages=max_pages, max_px=max_px, seconds=seconds,
                                               memory_mb=memory_mb, max_bytes=PAGE_MAX_BYTES, first_page=first_page)
        except render_server.Unavailable as exc:
            log.warning("PDF render server unavailable, rendering one-shot", extra={"error": str(exc)})
            cmd = [sys.executable, "-s", "-m", "core.evidence.pdf_render", path, out_dir, str(max_pages), str(max_px),
                   str(first_page)]
            done = subprocess.run(cmd, env=render_server.clean_env(), cwd=PROJECT_ROOT, capture_output=True,
                                  timeout=seconds, preexec_fn=_limits(memory_mb, seconds), stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, render_server.RenderTimeout):
        return Outcome("failed", f"The PDF took longer than {seconds} s to render, so it was stopped.")
    result = _last_json(done.stdout)
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        if name in ("SIGXCPU", "SIGKILL"):
            return Outcome("failed", f"The PDF took longer than {seconds} s of processing, so it was stopped.")
        if name == "SIGXFSZ":
            return Outcome("failed", "A rendered page of this PDF was too large to keep.")
        # pdfium aborts when an allocation fails, i.e. at the RLIMIT_AS limit.
        return Outcome("failed", f"The PDF renderer crashed on this file ({name}), most likely at its "
                                 f"{memory_mb} MB memory limit.")
    if "error" in result:
        return Outcome("failed", f"No preview: {result['error']}.")
    if done.returncode != 0 or "pages" not in result:
        memory = b"MemoryError" in done.stderr or b"alloc" in done.stderr.lower()
        return Outcome("failed", "The PDF renderer ran out of memory." if memory else "The PDF renderer failed on this file.")
    if int(result["pages"]) < first_page:
        return Outcome("failed", "The PDF has no pages to show.")
    return Outcome("made", pages=int(result["pages"]), page_count=int(result.get("page_count", 0)))


def _last_json(stdout: bytes) -> dict:
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _pdf_outcome(file: EvidenceFile, src_path: str, *, seconds: int, first_page: int = 1,
                 last_page: int = MAX_PDF_PAGES) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="pdf-preview-") as out_dir:
        outcome = render_pdf(src_path, out_dir, seconds=seconds, memory_mb=services().settings.preview_memory_mb,
                             max_pages=last_page, first_page=first_page)
        if outcome.state != "made":
            return outcome
        objects = {}
        for page in range(first_page, outcome.pages + 1):
            with open(os.path.join(out_dir, f"page-{page}.png"), "rb") as fh:
                data = fh.read(PAGE_MAX_BYTES + 1)
            if not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) > PAGE_MAX_BYTES:
                return Outcome("failed", "The PDF renderer produced an unusable page image.")
            objects[page_key(file, page)] = (data, "image/png")
        outcome.objects = objects
        return outcome


# ---- the job --------------------------------------------------------------------------------

def make_file_preview(file_id: int) -> str | None:
    """Make and store the preview of one clean file; returns the final state (made | failed), or
    None when there is nothing to do (unknown, deleted, not clean, already final). Raises only
    when storage or the database fails, so RQ retries."""
    storage = services().storage
    file = db.session.get(EvidenceFile, file_id)
    if file is None or file.deleted_at is not None or file.scan_state != "clean":
        return None
    resume = pages_owed(file)  # page 1 of a PDF made, the run that was adding the rest died
    if file.preview_state and not resume:
        return None
    source_key, ext, size = file.storage_key, file.ext, file.size_bytes
    # No transaction held while pdfium or Pillow works. Detached first, so the rollback does not
    # expire it: the preview keys read its loaded columns instead of a reload that would open a
    # transaction again (one more query, ~15 ms of a 1-page PDF's preview, bench/previews.py).
    db.session.expunge(file)
    db.session.rollback()

    if ext == "csv":
        # The table shows the first CSV_HEAD_BYTES only: read those, not the whole file into a spool.
        return _store(file_id, csv_outcome(_head(storage, source_key, CSV_HEAD_BYTES), size))
    with tempfile.NamedTemporaryFile(prefix="evidence-", suffix=f".{ext}") as spool:
        for chunk in storage.iter_chunks(source_key):
            spool.write(chunk)
        spool.flush()
        spool.seek(0)
        if ext == "pdf":
            return _pdf_preview(file, spool.name, resume=resume)
        elif ext in IMAGE_EXTS:
            outcome = _image_outcome(file, spool)
        else:
            outcome = Outcome("failed", f"No preview for .{ext} files.")
    return _store(file_id, outcome)


def pages_owed(file: EvidenceFile) -> bool:
    """A made PDF preview with fewer pages than it should have: its document has more pages, up to
    MAX_PDF_PAGES, than were stored (the second stage of _pdf_preview never finished)."""
    made, count = file.preview_pages or 0, file.preview_page_count or 0
    return file.ext == "pdf" and file.preview_state == "made" and made < min(count, MAX_PDF_PAGES)


def _pdf_preview(file: EvidenceFile, src_path: str, *, resume: bool = False) -> str | None:
    """The first page alone, stored and committed (the reviewer sees it), then pages 2 to
    MAX_PDF_PAGES, added to the made preview. Rendering all five before storing any made the first
    page of a long PDF wait for the other four (3.9x the renderer's time for page 1,
    bench/previews.py). Both stages share PREVIEW_TIME_LIMIT_SECONDS. `resume`: page 1 is made
    (its document's page count stored with it), only the rest is added."""
    import time

    limit = services().settings.preview_time_limit_seconds
    if resume:
        _store_more_pages(file.id, _pdf_outcome(file, src_path, seconds=limit, first_page=(file.preview_pages or 0) + 1))
        return "made"
    started = time.monotonic()
    first = _pdf_outcome(file, src_path, seconds=limit, last_page=1)
    state = _store(file.id, first)
    if state != "made" or first.page_count <= 1:
        return state
    left = max(1, int(limit - (time.monotonic() - started)))
    _store_more_pages(file.id, _pdf_outcome(file, src_path, seconds=left, first_page=2))
    return state


def _store_more_pages(file_id: int, outcome: Outcome) -> None:
    """Add pages 2.. to a PDF preview already made with its first page. If the document will not
    give them, the first page stays, the reason is logged, and no more pages are owed (so the
    sweeper does not try again). Raises only when storage or the database fails: the pages stay
    owed, and core.evidence.preview_sweep queues the job again."""
    storage = services().storage
    keys = put_objects(outcome)
    try:
        file = db.session.get(EvidenceFile, file_id, with_for_update=True, populate_existing=True)
        if file is None or file.deleted_at is not None or file.scan_state != "clean" or file.preview_state != "made":
            db.session.rollback()  # deleted meanwhile: leave nothing behind
            storage.delete_many(keys)
            return
        if not pages_owed(file):
            db.session.rollback()  # another run added them: its objects are these same keys, kept
            return
        if outcome.state != "made":
            log.warning("only the first page of a PDF previewed", extra={"file_id": file_id, "reason": outcome.reason})
            file.preview_page_count = file.preview_pages
            db.session.commit()
            return
        file.preview_pages = outcome.pages
        audit.record("file.preview_pages_added", "evidence_file", file.id, pages=outcome.pages)
        db.session.commit()
    except Exception:
        db.session.rollback()
        storage.delete_many(keys)
        raise


def read_head(stream, size: int) -> bytes:
    """Up to `size` bytes read from `stream`'s current position (a stream may return short reads)."""
    parts, left = [], size
    while left and (chunk := stream.read(left)):
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _head(storage, key: str, size: int) -> bytes:
    """Up to `size` bytes from the start of a stored object."""
    with storage.open(key) as fh:
        return read_head(fh, size)


def put_objects(outcome: Outcome) -> list[str]:
    """Store an outcome's objects; returns their keys (for the caller's clean-up if its
    transaction does not commit). Raises StorageError as Storage.put does."""
    storage = services().storage
    for key, (data, content_type) in (outcome.objects or {}).items():
        storage.put(key, io.BytesIO(data), len(data), content_type)
    return list(outcome.objects or {})


def _store(file_id: int, outcome: Outcome) -> str | None:
    storage = services().storage
    keys = put_objects(outcome)
    try:
        file = db.session.get(EvidenceFile, file_id, with_for_update=True, populate_existing=True)
        if file is None or file.deleted_at is not None or file.scan_state != "clean":
            db.session.rollback()  # retention got there first: leave nothing behind
            if keys:
                storage.delete_many(keys)
            return None
        if file.preview_state:
            # Another run of this job got there first. The keys are the same (one per file and
            # page) and now hold its preview: deleting them would break the one it committed.
            db.session.rollback()
            return None
        record_outcome(file, outcome)
        db.session.commit()
    except Exception:
        db.session.rollback()
        if keys:
            storage.delete_many(keys)
        raise
    if outcome.state == "failed":
        log.warning("no preview for evidence file", extra={"file_id": file_id, "reason": outcome.reason})
    return outcome.state


def record_outcome(file: EvidenceFile, outcome: Outcome) -> None:
    """A final preview outcome (its objects already stored) set on `file` in the caller's
    transaction: state, reason, pages, a CSV's table, an image's near-duplicate hash, and the
    audit event."""
    file.preview_state, file.preview_reason, file.preview_pages = outcome.state, outcome.reason, outcome.pages
    if outcome.table is not None:
        file.preview_table = outcome.table
    file.preview_page_count = outcome.page_count or None
    if outcome.phash is not None:
        duplicates.set_hash(file, outcome.phash)
        duplicates.record_match(file, services().settings.near_duplicate_distance)
    audit.record(f"file.preview_{outcome.state}", "evidence_file", file.id, pages=outcome.pages, reason=outcome.reason)


def preview_job_timeout() -> int:
    """The RQ timeout: past the renderer's own limit, so the child is stopped first and the
    outcome is stored."""
    return services().settings.preview_time_limit_seconds + 60


def preview_job_meta(ext: str | None) -> dict | None:
    """The preview job's RQ meta. A CSV's (ext "csv") runs in the worker's own process: its table
    is parsed by Python's csv module, with no C decoder of untrusted bytes to wall off in a work
    horse, and the fork cost more than the job."""
    from core.platform.queues import IN_PROCESS

    return {IN_PROCESS: True} if ext == "csv" else None


def enqueue_preview(file_id: int, ext: str | None = None) -> None:
    """Queue the preview job once the caller's transaction commits (preview_job_meta for `ext`)."""
    from core.platform.queues import enqueue_after_commit

    enqueue_after_commit("media", "jobs.previews.make_preview", file_id, job_id=f"preview-{file_id}",
                         timeout=preview_job_timeout(), meta=preview_job_meta(ext))
