"""A clean CSV's preview table made in the upload request, in the upload's own transaction,
instead of by a `media` job.

Why: the table reads the file's first 64 KiB and parses at most 20 rows, well under a
millisecond; queueing it cost more than making it. The enqueue in the web process, then RQ's
dequeue, registries and result in the worker, the row locked again and a second commit: about
14 ms of worker CPU and 1-3 ms of the web's per 1 MiB upload (docs/performance.md, "Where an
upload's CPU goes"). Here the table comes from the upload's own bytes (the spool, which for a
file linked into local storage is the stored object itself) once the scanner, having read all of
them, said clean, and is recorded exactly as the job records it (previews.record_outcome: the
same columns and `file.preview_made` / `file.preview_failed` event).

Only a new submission's files scanned before its commit (core/evidence/inline_scan.py) get their
table here. Every other file (past INLINE_SCAN_MAX_MB, added to an existing submission, not
concluded in the request) keeps the queued job, and the preview sweep still finds any clean file
without a preview. Images and PDFs always go to the job: their decoders are C code that runs
walled off in a forked work horse.
"""
from __future__ import annotations

import logging
from typing import BinaryIO

from core.evidence.previews import CSV_HEAD_BYTES, csv_outcome, enqueue_preview, put_objects, read_head, record_outcome
from core.platform.models import EvidenceFile

log = logging.getLogger(__name__)


def make_table(file: EvidenceFile, source: BinaryIO) -> list[str]:
    """In the upload's transaction, right after `file` (a CSV row, flushed) was recorded clean:
    store its table, made from `source` (the upload's bytes, read from offset 0), and record the
    outcome on the row. Returns the storage keys written, which the caller deletes if its
    transaction does not commit. If storage fails, nothing is recorded and the usual preview job
    is queued after the commit instead; never raises for that."""
    source.seek(0)
    outcome = csv_outcome(file, read_head(source, CSV_HEAD_BYTES), file.size_bytes)
    try:
        keys = put_objects(outcome)
    except Exception as exc:  # noqa: BLE001 - a preview is not worth failing the upload for
        log.warning("could not store a CSV preview in the request; queued", extra={"file_id": file.id,
                                                                                 "error": type(exc).__name__})
        enqueue_preview(file.id, file.ext)
        return []
    record_outcome(file, outcome)
    return keys
