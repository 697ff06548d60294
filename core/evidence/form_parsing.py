"""Multipart parsing in reads of nearly 1 MiB instead of werkzeug's 64 KiB, into UploadSpools.

gunicorn's body reader reads ahead up to 1 MiB and, for every smaller read, copies what is left of
its buffer; at 64 KiB per read that re-copied each MiB about eight times (about 35% of the web
process's CPU for a 25 MiB upload; docs/performance.md). Reading nearly a whole buffer at a time
leaves little to re-copy. Memory stays one read per request.
"""
from __future__ import annotations

import re

from flask import Request
from werkzeug.formparser import FormDataParser

from core.evidence.filetypes import ext_of
from core.evidence.multipart import Parser
from core.platform.services import services
from core.evidence.spooling import UploadSpool

# Below MAX_FORM_MEMORY_SIZE (1 MiB, app.py): werkzeug's decoder refuses with 413 once its buffer
# (one read plus a held-back partial boundary) outgrows that limit, even inside a file part.
READ_SIZE = 1024 * 1024 - 64 * 1024


# The quoted filename parameter as the client sent it (browsers send `"` as %22, so the first
# closing quote ends it), and whether an RFC 5987 filename* (which werkzeug prefers) is there.
_RAW_FILENAME = re.compile(r'(?:^|;)\s*filename\s*=\s*"([^"]*)"', re.IGNORECASE)
_EXTENDED_FILENAME = re.compile(r'(?:^|;)\s*filename\*\s*=', re.IGNORECASE)


def client_file_name(parsed: str | None, content_disposition: str | None) -> str | None:
    """The part's file name with any client path removed, from the raw Content-Disposition.

    werkzeug reads a quoted parameter as an HTTP quoted-string, where a backslash escapes the next
    character, so an older Windows browser's `filename="C:\\Users\\Example\\scan.pdf"` arrives as
    `C:UsersExamplescan.pdf`, folder and account names glued into the name. Browsers do not
    escape backslashes (WHATWG HTML, multipart/form-data encoding), so when the raw value holds one
    it is a path separator: only what follows the last / or \\ is kept. Otherwise (and whenever
    filename* is present) werkzeug's reading stands; core.platform.filenames strips POSIX paths."""
    if not content_disposition or _EXTENDED_FILENAME.search(content_disposition):
        return parsed
    match = _RAW_FILENAME.search(content_disposition)
    if not match or "\\" not in match.group(1):
        return parsed
    base = re.split(r"[/\\]", match.group(1))[-1]
    return base or parsed


class LargeReadFormDataParser(FormDataParser):
    def _parse_multipart(self, stream, mimetype, content_length, options):
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")  # FormDataParser.parse turns this into an empty form
        parser = Parser(stream_factory=self.stream_factory, max_form_memory_size=self.max_form_memory_size,
                        max_form_parts=self.max_form_parts, cls=self.cls, buffer_size=READ_SIZE)
        form, files = parser.parse(stream, boundary, content_length)
        for _field, storage in files.items(multi=True):
            storage.filename = client_file_name(storage.filename, storage.headers.get("Content-Disposition"))
        return stream, form, files


class PointsRequest(Request):
    form_data_parser_class = LargeReadFormDataParser

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        # Size, hash and PDF check as the part arrives, and the per-file limit while reading
        # (core/evidence/spooling.py); the same test of the name as core.evidence.uploads makes for PDFs.
        # The spool sits on the local storage's disk, so storing it is a link, not a copy.
        svc = services()
        return UploadSpool(svc.settings.max_upload_bytes, pdf=ext_of(filename) == "pdf",
                           directory=svc.storage.spool_dir())
