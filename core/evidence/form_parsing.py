"""Multipart parsing in reads of nearly 1 MiB instead of werkzeug's 64 KiB, into UploadSpools.

gunicorn's body reader reads ahead up to 1 MiB and, for every smaller read, copies what is left of
its buffer; at 64 KiB per read that re-copied each MiB about eight times (about 35% of the web
process's CPU for a 25 MiB upload; docs/performance.md). Reading nearly a whole buffer at a time
leaves little to re-copy. Memory stays one read per request.
"""
from __future__ import annotations

from flask import Request
from werkzeug.formparser import FormDataParser, MultiPartParser

from core.evidence.filetypes import ext_of
from core.platform.services import settings
from core.evidence.spooling import UploadSpool

# Below MAX_FORM_MEMORY_SIZE (1 MiB, app/__init__.py): werkzeug's decoder refuses with 413 once its buffer
# (one read plus a held-back partial boundary) outgrows that limit, even inside a file part.
READ_SIZE = 1024 * 1024 - 64 * 1024


class LargeReadFormDataParser(FormDataParser):
    def _parse_multipart(self, stream, mimetype, content_length, options):
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")  # FormDataParser.parse turns this into an empty form
        parser = MultiPartParser(stream_factory=self.stream_factory, max_form_memory_size=self.max_form_memory_size,
                                 max_form_parts=self.max_form_parts, cls=self.cls, buffer_size=READ_SIZE)
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files


class PointsRequest(Request):
    form_data_parser_class = LargeReadFormDataParser

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        # Size, hash and PDF check as the part arrives, and the per-file limit while reading
        # (core/evidence/spooling.py); the same test of the name as core.evidence.uploads makes for PDFs.
        return UploadSpool(settings().max_upload_bytes, pdf=ext_of(filename) == "pdf")
