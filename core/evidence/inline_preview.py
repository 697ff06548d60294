"""A clean CSV's preview table made in the upload request, in the upload's own transaction,
instead of by a `media` job.

Why: the table reads the file's first 64 KiB and parses at most 20 rows, well under a
millisecond; queueing it cost more than making it. The enqueue in the web process, then RQ's
dequeue, registries and result in the worker, the row locked again and a second commit: about
14 ms of worker CPU and 1-3 ms of the web's per 1 MiB upload (docs/performance.md, "Where an
upload's CPU goes"). Here the table comes from the upload's own bytes (the spool, which for a
file linked into local storage is the stored object itself) once the scanner, having read all of
them, said clean, and is recorded exactly as the job records it (previews.record_outcome: the
same columns, the table in the row (core/evidence/csv_preview.py), and the `file.preview_made` /
`file.preview_failed` event). It is written by the upload's INSERT and goes with its commit:
nothing is stored apart from the row, so a failed commit leaves nothing behind.

Only a new submission's files scanned before its commit (core/evidence/inline_scan.py) get their
table here. Every other file (past INLINE_SCAN_MAX_MB, added to an existing submission, not
concluded in the request) keeps the queued job, and the preview sweep still finds any clean file
without a preview. Images and PDFs always go to the job: their decoders are C code that runs
walled off in a forked work horse.
"""
from __future__ import annotations

from typing import BinaryIO

from core.evidence.csv_preview import CSV_HEAD_BYTES
from core.evidence.previews import csv_outcome, read_head, record_outcome
from core.platform.models import EvidenceFile


def make_table(file: EvidenceFile, source: BinaryIO) -> None:
    """In the upload's transaction, right after `file` (a CSV row) was recorded clean: record its
    preview (the table, or `failed` when the file has no rows) on the row, from `source` (the
    upload's bytes, read from offset 0: at most CSV_HEAD_BYTES of them)."""
    source.seek(0)
    record_outcome(file, csv_outcome(read_head(source, CSV_HEAD_BYTES), file.size_bytes))
