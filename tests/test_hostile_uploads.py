"""A corpus of hostile and odd uploads, generated here, each with its expected outcome, pushed
through the real upload path, a real clamd and a real burst worker.

Decisions the corpus pins down:
- A PDF naming a /JavaScript or /Launch action is refused (`pdf_active_content`), even with the
  name #-escaped. Compressed object streams and other automatic actions: tests/test_pdf_active_content.py.
- A JPEG that is also an HTML page (markup in a comment) is accepted: it is a valid picture,
  always served as an attachment, and reviewers see only our re-encoded thumbnail.
- A CSV cell that starts with "=" is accepted: it is text, and evidence is kept byte for byte, so
  it cannot be defused. The download is never rendered by us, and the review page tells the
  reviewer to open CSV files as text (tests/test_portal_review.py).
"""
from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from core.platform.db import db
from core.platform.errors import DomainError
from core.platform.models import EvidenceFile, Submission
from tests.evidence_support import (CLEAN_PDF, CSV, image_bytes, incoming, pdf_with_embedded_file, run_worker, setup_people,
                                   stored_keys, yesterday)

MB = 1024 * 1024
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIG = "Eicar-Test-Signature.UNOFFICIAL"
CLAM_EXE = Path("/usr/share/clamav-testfiles/clam.exe").read_bytes()


def zipped(files: dict[str, bytes | str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()


def pdf_with(extra_objects: bytes, catalog_extra: bytes = b"") -> bytes:
    return (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R " + catalog_extra + b" >>\nendobj\n"
            b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n" + extra_objects
            + b"trailer\n<< /Root 1 0 R >>\n%%EOF\n")


def pdf_stream(data: bytes) -> bytes:
    return pdf_with(b"3 0 obj\n<< /Length " + str(len(data)).encode() + b" >>\nstream\n" + data + b"\nendstream\nendobj\n")


def png_bomb() -> bytes:
    """100 megapixels of one colour: a few KB compressed, 100 MB+ decoded."""
    out = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(out, "PNG", optimize=True)
    return out.getvalue()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header is rewritten to claim a huge size."""
    data = bytearray(image_bytes("JPEG", (16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def polyglot_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(out, "JPEG", comment=b"<html><script>alert(document.cookie)</script>")
    return out.getvalue() + b"<html><body><script>alert(1)</script></body></html>"


def limit_csv(size: int) -> bytes:
    row = b"12,34,56\n"
    return (row * (size // len(row) + 1))[:size]


@dataclass(frozen=True)
class Case:
    label: str
    name: str
    data: bytes
    outcome: str  # "clean" | "infected" | a refusal code
    declared: str | None = "application/octet-stream"


CASES = [
    # allowed types, honest
    Case("plain pdf", "report.pdf", CLEAN_PDF, "clean"),
    Case("upper-case extension", "REPORT.PDF", CLEAN_PDF, "clean"),
    Case("jpeg", "photo.jpeg", image_bytes("JPEG"), "clean"),
    Case("csv", "people.csv", CSV, "clean"),
    Case("exactly the size limit", "limit.csv", limit_csv(MB), "clean"),
    Case("wrong Content-Type header is ignored", "declared.pdf", CLEAN_PDF, "clean", "image/png"),
    Case("unicode name", "Relatório café 日本.pdf", CLEAN_PDF, "clean"),
    Case("300-character name", "a" * 296 + ".pdf", CLEAN_PDF, "clean"),
    Case("path traversal with an allowed extension", "../../../etc/evil.csv", CSV, "clean"),
    Case("polyglot JPEG/HTML", "poly.jpg", polyglot_jpeg(), "clean"),
    Case("CSV formula", "formula.csv", b"=cmd|' /C calc'!A0,2\n", "clean"),
    # malware that only the scanner can see
    Case("EICAR as csv", "eicar.csv", EICAR, "infected"),
    # names
    Case("path traversal without extension", "../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n", "filename_invalid"),
    Case("NUL in the name", "report.pdf\x00.exe", CLEAN_PDF, "filename_invalid"),
    Case("no extension", "README", CSV, "filename_invalid"),
    Case("double extension ending in exe", "invoice.pdf.exe", CLEAN_PDF, "file_type_not_allowed"),
    Case("right-to-left override", "evil\u202efdp.exe", CLEAN_PDF, "file_type_not_allowed"),
    Case("double extension png bytes as pdf", "photo.png.pdf", image_bytes("PNG"), "file_type_mismatch"),
    # sizes
    Case("zero bytes", "empty.pdf", b"", "file_empty"),
    Case("one byte over the limit", "over.csv", limit_csv(MB + 1), "file_too_large"),
    # disguised programs and archives
    Case("exe renamed pdf", "invoice.pdf", CLAM_EXE, "file_type_mismatch"),
    Case("exe", "clam.exe", CLAM_EXE, "file_type_not_allowed"),
    Case("ELF renamed csv", "data.csv", Path("/bin/true").read_bytes(), "file_type_mismatch"),
    Case("shell script renamed csv", "run.csv", b"#!/bin/sh\nrm -rf /\n", "file_type_mismatch"),
    Case("PHP renamed jpg", "shell.jpg", b"<?php system($_GET['c']); ?>\n", "file_type_mismatch"),
    Case("PHP renamed csv", "shell.csv", b"<?php system($_GET['c']); ?>\n", "file_type_mismatch"),
    Case("HTML renamed csv", "page.csv", b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
         "file_type_mismatch"),
    Case("script markup in csv text", "sneaky.csv", b"name,note\nA,<script>alert(1)</script>\n", "file_type_mismatch"),
    Case("zip renamed png", "photo.png", zipped({"a.txt": "hello"}), "file_type_mismatch"),
    Case("zip", "archive.zip", zipped({"a.txt": "hello"}), "file_type_not_allowed"),
    Case("EICAR as pdf (libmagic: text/plain)", "eicar.pdf", EICAR, "file_type_mismatch"),
    Case("EICAR in a zip renamed pdf", "eicar-zip.pdf", zipped({"eicar.com": EICAR}), "file_type_mismatch"),
    Case("clam.exe in a zip renamed csv", "clam-zip.csv", zipped({"clam.exe": CLAM_EXE}), "file_type_mismatch"),
    Case("docx", "letter.docx", zipped({"[Content_Types].xml": "<Types/>", "word/document.xml": "<w/>"}),
         "file_type_not_allowed"),
    Case("docx renamed pdf", "letter.pdf", zipped({"[Content_Types].xml": "<Types/>", "word/document.xml": "<w/>"}),
         "file_type_mismatch"),
    Case("xlsx renamed csv", "sheet.csv", zipped({"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<w/>"}),
         "file_type_mismatch"),
    # other image formats
    Case("SVG with script", "logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
         "file_type_not_allowed"),
    Case("SVG renamed png", "logo.png", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
         "file_type_mismatch"),
    Case("GIF", "anim.gif", image_bytes("GIF"), "file_type_not_allowed"),
    Case("GIF renamed jpg", "anim.jpg", image_bytes("GIF"), "file_type_mismatch"),
    Case("TIFF", "scan.tif", image_bytes("TIFF"), "file_type_not_allowed"),
    Case("PNG renamed jpg", "shot.jpg", image_bytes("PNG"), "file_type_mismatch"),
    # damaged and hostile images
    Case("PNG decompression bomb", "bomb.png", png_bomb(), "image_too_large"),
    Case("JPEG header claiming 60000x60000", "huge.jpg", jpeg_claiming(60_000, 60_000), "image_too_large"),
    Case("truncated PNG", "cut.png", image_bytes("PNG", (300, 300), (9, 99, 199))[:400], "image_unreadable"),
    # hostile text
    Case("CSV with NUL bytes", "nul.csv", b"a,b\n1,\x00\x00\x002\n", "file_type_mismatch"),
    Case("CSV in UTF-16 with a BOM", "utf16.csv", "name,count\nAda,3\n".encode("utf-16"), "clean"),
    Case("CSV in Windows-1252", "cp1252.csv", "name,count\nJosé,3\n".encode("cp1252"), "csv_encoding_not_supported"),
    # the field report: an embedded file that inflates past clamd's MaxFileSize (120 MiB in 123 KB)
    Case("PDF whose embedded file inflates to 120 MiB", "report.pdf", pdf_with_embedded_file(120), "unscannable"),
    # PDFs with active content
    Case("PDF with JavaScript", "js.pdf",
         pdf_with(b"", b"/OpenAction << /S /JavaScript /JS (app.alert(1)) >>"), "pdf_active_content"),
    Case("PDF with #-escaped JavaScript", "js2.pdf",
         pdf_with(b"", b"/OpenAction << /S /J#61vaScript /JS (app.alert(1)) >>"), "pdf_active_content"),
    Case("PDF with Launch", "launch.pdf",
         pdf_with(b"", b"/OpenAction << /S /Launch /F (cmd.exe) >>"), "pdf_active_content"),
]


def is_sentence(message: str) -> bool:
    return (bool(re.match(r"^[A-Z0-9\"'a-z]", message)) and message.endswith(".") and "\x00" not in message
            and "Traceback" not in message and "application/" not in message and len(message) < 300)


def test_hostile_corpus_through_clamd_and_a_real_worker(make_app, clamd_server):
    assert len(CASES) >= 30 and len({c.label for c in CASES}) == len(CASES)  # the corpus the issue asks for
    clamd_server.start()
    app = make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.url, MAX_UPLOAD_MB=1)
    people = setup_people(app)
    from core.evidence.uploads import create_submission

    submitted: dict[str, int] = {}
    refusals: dict[str, DomainError] = {}
    for case in CASES:
        with app.app_context():
            try:
                submission = create_submission(people["owner"], "EXPLORE", yesterday(),
                                               files=[incoming(case.name, case.data, case.declared)])
            except DomainError as exc:
                refusals[case.label] = exc
            else:
                submitted[case.label] = submission.files[0].id
    run_worker(app)

    outcomes: dict[str, str] = {label: exc.code for label, exc in refusals.items()}
    with app.app_context():
        rows = {label: db.session.get(EvidenceFile, file_id) for label, file_id in submitted.items()}
        for label, row in rows.items():
            outcomes[label] = row.scan_state
        expected = {c.label: c.outcome for c in CASES}
        assert outcomes == expected

        # Refusals: a stable code, a sentence for a person, and the field it belongs to.
        for label, exc in refusals.items():
            assert is_sentence(exc.message), (label, exc.message)
            assert exc.details and exc.details[0]["field"] == "files[0]", label

        # Infected: object gone, signature kept, submission rejected with that reason.
        infected = rows["EICAR as csv"]
        assert infected.scan_signature == EICAR_SIG
        assert db.session.get(Submission, infected.submission_id).reason == f"File eicar.csv contains malware ({EICAR_SIG})."

        # Names as stored: no path, no controls, at most 120 characters, extension kept.
        assert rows["path traversal with an allowed extension"].original_name == "evil.csv"
        assert rows["unicode name"].original_name == "Relatório café 日本.pdf"
        long_name = rows["300-character name"].original_name
        assert len(long_name) <= 120 and long_name.endswith(".pdf")
        assert rows["exactly the size limit"].size_bytes == MB

        # Storage holds exactly the accepted, clean objects (and the thumbnails of clean images), and
        # the unscannable ones, kept for an admin to look at but never served.
        clean = [r for r in rows.values() if r.scan_state == "clean"]
        kept = [r.storage_key for r in rows.values() if r.scan_state == "unscannable"]
        want = sorted([r.storage_key for r in clean] + [r.thumbnail_key for r in clean if r.thumbnail_key] + kept)
        assert all(r.thumbnail_key for r in clean if r.is_image)
        assert all(key.startswith((f"evidence/{people['owner']}/EXPLORE/", f"thumbnails/{people['owner']}/EXPLORE/"))
                   for key in want)
    # ...plus the previews of clean files (core.evidence.previews): each clean file has a final
    # preview outcome, and only made previews left objects, under their own prefix.
    assert all(r.preview_state in ("made", "failed") for r in clean)
    made = {r.uuid for r in clean if r.preview_state == "made"}
    previews = [k for k in stored_keys(app) if k.startswith(f"previews/{people['owner']}/EXPLORE/")]
    assert previews and all(k.split("/")[3] in made for k in previews)
    assert [k for k in stored_keys(app) if k not in previews] == want
