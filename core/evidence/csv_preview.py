"""A CSV's preview for reviewers: its first rows as data, kept in its evidence_files row.

The portal renders the cells with autoescaping; cells a spreadsheet would run as a formula are
marked (OWASP, "CSV Injection"). Pure rules: no storage, no database.

Why the row and not an object (as PDF pages and images are): the table is at most CSV_ROWS x
CSV_COLUMNS cells of CSV_CELL_CHARS characters, made in the upload's own transaction for most
CSVs (core/evidence/inline_preview.py). As an object it cost a directory per file, a temporary
file, an fsync and a rename in the upload request, about a tenth of the web's CPU per 1 MiB CSV
upload (docs/performance.md, "Tenth session"); in the row it is one more column of the INSERT the
upload already makes, and it goes with the row's transaction: no object without its row.
"""
from __future__ import annotations

import codecs
import csv
import io
import re

CSV_HEAD_BYTES = 64 * 1024  # the table reads no more of the file than this
CSV_ROWS = 20
CSV_COLUMNS = 20
CSV_CELL_CHARS = 200
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?%?")


def is_formula(cell: str) -> bool:
    """Would a spreadsheet run this cell? Starts with = + - @ tab or CR (OWASP "CSV injection"),
    except a plain number such as -5 or +3.2, which a spreadsheet reads as a number."""
    return cell.startswith(FORMULA_START) and not _NUMBER.fullmatch(cell.strip())


# Byte-order marks the type check lets through (a spreadsheet's "Unicode text" is UTF-16): read
# as UTF-8, such a file showed as NULs and no cell was marked as a formula. UTF-32 first: its
# little-endian mark begins with UTF-16's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF8, "utf-8"))


def _decode(head: bytes) -> str:
    """The text of a CSV's first bytes: by its byte-order mark (dropped), else UTF-8; bytes that
    do not decode (or a character cut by the byte limit) become U+FFFD."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return head[len(bom):].decode(encoding, errors="replace")
    return head.decode("utf-8", errors="replace")


def csv_table(head: bytes, *, complete: bool) -> dict:
    """The first CSV_ROWS rows of `head` (the file's first bytes) as
    {"rows": [[{"text": str, "formula": bool}, ...], ...], "truncated": bool, "formulas": int}.
    Text is left raw: the template escapes it. A last line cut by the byte limit is dropped;
    `complete`: `head` is the whole file."""
    text = _decode(head).lstrip("\ufeff")
    if not complete and "\n" in text:
        text = text[:text.rindex("\n") + 1]
    rows, truncated = [], not complete
    try:
        for i, row in enumerate(csv.reader(io.StringIO(text, newline=""))):
            if i >= CSV_ROWS:
                truncated = True
                break
            if len(row) > CSV_COLUMNS:
                row, truncated = row[:CSV_COLUMNS], True
            rows.append([{"text": c[:CSV_CELL_CHARS], "formula": is_formula(c)} for c in row])
    except csv.Error:
        truncated = True  # e.g. a NUL byte: show the rows read so far
    return {"rows": rows, "truncated": truncated, "formulas": sum(c["formula"] for r in rows for c in r)}
