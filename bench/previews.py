"""PDF preview time against the renderer called directly (issue 18, goal 5), in the same run.

    .venv/bin/python -m bench.previews [--runs 15]

Two PDFs made here, like evidence people send: a one-page report (a heading, body text in
Helvetica and a 1200x900 JPEG photo) and a 12-page one (the same first page, then pages of text).

- **Production path** (timed): core.evidence.previews.make_file_preview(file_id), what the
  preview job runs once RQ hands it the id: load the row, copy the stored bytes (local storage,
  fsync'd on put) into a spool file, render page 1 in the limited renderer process (a fork of the
  warm core.evidence.render_server process: rlimits, no app settings), check the PNG, store it,
  and commit preview_state `made` with an audit row. The first-page time ends at that commit (a
  SQLAlchemy after_commit listener): from then on a reviewer sees page 1. The job then renders and
  stores pages 2-5 of a longer PDF the same way; its whole time is printed too.
  Not included: RQ's own work (dequeue, the forked work horse, result bookkeeping).
- **Renderer directly** (the baseline): core.evidence.pdf_render.render() called in this process
  on a file holding the same bytes, pypdfium2 already imported and warm: open, render at the same
  scale (PAGE_PX on the longer side), encode the same PNG, written to a file. Page 1 for the
  goal's figure; for the 12-page file also the MAX_PDF_PAGES pages the job stores.

Runs alternate (production, direct, production, ...) so both see the same load; the medians are
compared. Goal: the first page at most 1.5x the renderer called directly.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import statistics
import sys
import tempfile
import time
import zlib

from bench.common import figure, temp_environment

BOUND = 1.5


# ---- PDFs -----------------------------------------------------------------------------------

def photo_jpeg(seed: int, width: int = 1200, height: int = 900) -> bytes:
    """A photo-like JPEG: a lighting gradient, soft blobs, grain."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randrange(20, 220)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(256) for _ in range(3)))
    image = image.filter(ImageFilter.GaussianBlur(3))
    noise = Image.effect_noise((width, height), 12).convert("RGB")
    image = Image.blend(image, noise, 0.08)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def _pdf(objects: list[bytes]) -> bytes:
    """Object i+1 is objects[i]; object 1 is the catalog. A classic cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def report_pdf(pages: int) -> bytes:
    """An A4 report: page 1 a heading, 14 lines and the photo; further pages 48 lines of text."""
    jpeg = photo_jpeg(5)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               _stream(jpeg, b"/Type /XObject /Subtype /Image /Width 1200 /Height 900 /ColorSpace /DeviceRGB"
                             b" /BitsPerComponent 8 /Filter /DCTDecode")]
    kids = []
    for page in range(1, pages + 1):
        ops = [b"BT /F1 20 Tf 56 780 Td (Workshop evidence, page %d of %d) Tj ET" % (page, pages)]
        for line in range(14 if page == 1 else 48):
            ops.append(b"BT /F1 10 Tf 56 %d Td (%d. Participants attended the session, completed the exercises"
                       b" and presented their results to the group.) Tj ET" % (750 - 14 * line, line + 1))
        if page == 1:
            ops.append(b"q 480 0 0 360 56 120 cm /Im0 Do Q")
        number = len(objects) + 1
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R"
                       b" /Resources << /Font << /F1 3 0 R >> /XObject << /Im0 4 0 R >> >> >>" % (number + 1))
        objects.append(_stream(zlib.compress(b"\n".join(ops)), b"/Filter /FlateDecode"))
        kids.append(b"%d 0 R" % number)
    objects[1] = b"<< /Type /Pages /Kids [" + b" ".join(kids) + b"] /Count %d >>" % pages
    return _pdf(objects)


# ---- timing ---------------------------------------------------------------------------------

def store_file(user_id: int, submission_id: int, name: str, data: bytes) -> int:
    from core.platform.db import db
    from core.platform.models import EvidenceFile
    from core.platform.services import services

    row = EvidenceFile(submission_id=submission_id, user_id=user_id, activity_code="EXPLORE", original_name=name,
                       ext="pdf", content_type="application/pdf", size_bytes=len(data),
                       sha256=hashlib.sha256(data).hexdigest(), scan_state="clean")
    row.storage_key = f"evidence/{user_id}/EXPLORE/{row.uuid or name}-{name}"
    services().storage.put(row.storage_key, io.BytesIO(data), len(data), "application/pdf")
    db.session.add(row)
    db.session.commit()
    return row.id


COMMITS: list[float] = []  # perf_counter() of every database commit (the SQLAlchemy session event)


def production(file_id: int) -> tuple[float, float]:
    """Seconds for one preview job body: (until the first page is committed as made, i.e. a
    reviewer can see it; until the job returns). The file is reset to "no preview yet" first."""
    from core.evidence.previews import make_file_preview, preview_prefix
    from core.platform.db import db
    from core.platform.models import EvidenceFile
    from core.platform.services import services

    file = db.session.get(EvidenceFile, file_id)
    storage = services().storage
    storage.delete_many([o.key for o in storage.list(preview_prefix(file))])
    file.preview_state, file.preview_reason, file.preview_pages = None, None, 0
    db.session.commit()
    db.session.expire_all()
    COMMITS.clear()
    started = time.perf_counter()
    state = make_file_preview(file_id)
    spent = time.perf_counter() - started
    if state != "made" or not COMMITS:
        raise SystemExit(f"error: the preview job ended in {state!r}")
    return COMMITS[0] - started, spent


def direct(path: str, pages: int) -> float:
    """Seconds for the renderer called in this process on the same bytes, same size and encoding."""
    from core.evidence import pdf_render
    from core.evidence.previews import PAGE_PX

    with tempfile.TemporaryDirectory(prefix="bench-direct-") as out:
        started = time.perf_counter()
        result = pdf_render.render(path, out, pages, PAGE_PX)
        spent = time.perf_counter() - started
    if result.get("pages") != pages:
        raise SystemExit(f"error: the renderer made {result}")
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    # It queues nothing: no Redis db of its own (None), so none is flushed under another run.
    with tempfile.TemporaryDirectory() as tmp, temp_environment(None, tmp, QUEUE_PREFIX="bench-previews:") as (env, _):
        return run(env, tmp, args)


def run(env: dict, tmp: str, args) -> int:
    from app import create_app
    from core.accounts.users import create_user
    from core.evidence.previews import MAX_PDF_PAGES
    from core.platform.db import db
    from core.platform.models import Submission
    from core.points.catalogue import seed_catalogue

    from sqlalchemy import event
    from sqlalchemy.orm import Session

    event.listen(Session, "after_commit", lambda _session: COMMITS.append(time.perf_counter()))
    app = create_app(env)
    results = []
    with app.app_context():
        seed_catalogue()
        user = create_user("uploader@example.com", "uploader", "bench-password-1")[0]
        db.session.flush()
        submission = Submission(user_id=user.id, activity_code="EXPLORE", status="in_review",
                                session_date=__import__("datetime").date(2024, 1, 1), counters={})
        db.session.add(submission)
        db.session.commit()
        for pages in (1, 12):
            data = report_pdf(pages)
            path = os.path.join(tmp, f"report-{pages}.pdf")
            with open(path, "wb") as fh:
                fh.write(data)
            file_id = store_file(user.id, submission.id, f"report-{pages}.pdf", data)
            rendered = min(pages, MAX_PDF_PAGES)
            for _ in range(2):  # warm: imports, the renderer's first start, connections
                production(file_id)
                direct(path, 1)
            shown, prod, first, same = [], [], [], []
            for _ in range(args.runs):
                page_one, whole = production(file_id)
                shown.append(page_one)
                prod.append(whole)
                first.append(direct(path, 1))
                if rendered > 1:
                    same.append(direct(path, rendered))
            results.append((pages, len(data), rendered, statistics.median(shown), statistics.median(prod),
                            statistics.median(first), statistics.median(same) if same else None, min(shown), min(first)))
        db.session.remove()
        db.engine.dispose()

    print(f"\nmedians over {args.runs} alternating runs (ms):")
    for pages, size, rendered, shown, prod, first, same, shown_min, first_min in results:
        line = (f"  {pages:>2}-page PDF ({size / 1024:.0f} KiB): preview job: page 1 shown after {shown * 1000:.1f} ms "
                f"(best {shown_min * 1000:.1f}), all {rendered} page(s) stored after {prod * 1000:.1f} ms; renderer directly, "
                f"page 1: {first * 1000:.1f} ms (best {first_min * 1000:.1f})")
        if same:
            line += f", pages 1-{rendered}: {same * 1000:.1f} ms"
        print(line)
    for pages, size, rendered, shown, prod, first, same, *_ in results:
        figure("5 previews, near-duplicates", f"PDF first-page preview ({pages}-page file): job until page 1 is shown, "
               "against the renderer called directly on page 1", f"{shown * 1000:.1f} ms = {shown / first:.2f}x",
               f"{first * 1000:.1f} ms; bound {BOUND:g}x", shown / first <= BOUND)
        if same:
            figure("5 previews, near-duplicates", f"PDF preview of a {pages}-page file, job until all {rendered} pages are "
                   f"stored, against the renderer on the same {rendered} pages", f"{prod * 1000:.1f} ms = {prod / same:.2f}x",
                   f"{same * 1000:.1f} ms", None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
