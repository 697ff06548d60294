"""Allow-list typing by content: the name's extension and libmagic's verdict must both be allowed
and must agree. Also the one place that makes user-supplied file names safe to show.

libmagic 5.44 (Debian's libmagic1) answers, for the samples in tests/test_filetypes.py:
PDF application/pdf, JPEG image/jpeg, PNG image/png, CSV text/csv or text/plain (a semicolon or
one-column CSV, or a UTF-8 BOM, gives text/plain), HTML text/html, PE
application/vnd.microsoft.portable-executable, bare MZ application/x-dosexec, ZIP application/zip.
"""
from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass
from typing import BinaryIO, NoReturn, Union

import magic

from core.platform.errors import UnsupportedMediaType, ValidationError
from core.platform.filenames import sanitise_filename

HEAD_BYTES = 8192

# Allowed types per extension, never a deny-list: anything libmagic calls otherwise is refused.
ALLOWED: dict[str, frozenset[str]] = {
    "pdf": frozenset({"application/pdf"}),
    "jpg": frozenset({"image/jpeg"}),
    "jpeg": frozenset({"image/jpeg"}),
    "png": frozenset({"image/png"}),
    # text/plain is needed: libmagic only says text/csv for comma-separated ASCII/latin-1 text.
    # HTML is text/html and XML text/xml, so neither is covered; check() adds a text check.
    "csv": frozenset({"text/csv", "text/plain"}),
}

# The content type we store and serve for each extension, whatever libmagic's spelling.
CANONICAL: dict[str, str] = {
    "pdf": "application/pdf",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "csv": "text/csv",
}

_EXT_WORDS = {
    "pdf": "a PDF",
    "jpg": "a JPEG image",
    "jpeg": "a JPEG image",
    "png": "a PNG image",
    "csv": "a CSV spreadsheet",
}

_MIME_WORDS = {
    "application/pdf": "a PDF",
    "image/jpeg": "a JPEG image",
    "image/png": "a PNG image",
    "image/gif": "a GIF image",
    "image/webp": "a WebP image",
    "image/svg+xml": "an SVG drawing",
    "text/csv": "a CSV spreadsheet",
    "text/plain": "plain text",
    "text/html": "a web page (HTML)",
    "text/xml": "an XML document",
    "application/x-dosexec": "a Windows program",
    "application/vnd.microsoft.portable-executable": "a Windows program",
    "application/x-executable": "a program",
    "application/x-sharedlib": "a program",
    "application/x-pie-executable": "a program",
    "application/x-mach-binary": "a program",
    "text/x-shellscript": "a script",
    "text/x-php": "a script",
    "text/x-python": "a script",
    "application/javascript": "a script",
    "application/zip": "a ZIP archive",
    "application/gzip": "a compressed archive",
    "application/x-7z-compressed": "a compressed archive",
    "application/x-rar": "a compressed archive",
    "application/x-empty": "empty",
}

# Markup or script that a spreadsheet or browser might act on; no honest CSV starts like this.
_MARKUP = re.compile(
    r"<\s*(script|html|body|iframe|object|embed|svg|meta|link|style)\b|<!doctype|<\?php|<\?xml|javascript:",
    re.IGNORECASE,
)
# C0 controls other than tab, LF, CR (and form feed, which some exporters emit); includes NUL.
_BAD_TEXT_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class TypedFile:
    ext: str
    content_type: str
    detected: str = ""


def describe_type(mime: str) -> str:
    """A person's words for a MIME type, for error messages."""
    return _MIME_WORDS.get(mime, f"of type {mime}")


def detect(stream_or_path: Union[BinaryIO, bytes, bytearray, str, os.PathLike]) -> str:
    """libmagic's MIME type for the first 8 KiB; a stream's position is restored afterwards."""
    if isinstance(stream_or_path, (bytes, bytearray, memoryview)):
        head = bytes(stream_or_path[:HEAD_BYTES])
    elif isinstance(stream_or_path, (str, os.PathLike)):
        with open(stream_or_path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    else:
        pos = stream_or_path.tell()
        try:
            head = stream_or_path.read(HEAD_BYTES)
        finally:
            stream_or_path.seek(pos)
    if not head:
        return "application/x-empty"
    return magic.from_buffer(head, mime=True)


def ext_of(name: str | None) -> str:
    """The last extension, lower-cased ("report.pdf.exe" -> "exe"); "" when there is none."""
    base = sanitise_filename(name)
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:
        return ""
    return ext.lower()


class _CsvEncoding(Exception):
    """Text, but in an encoding the product does not take; args[0] names it for a person."""


def _csv_text(head: bytes) -> str:
    """The head of a CSV decoded as UTF-8 (with or without BOM) or UTF-16 with a BOM, the two
    encodings spreadsheet exporters write that are accepted (the file itself is kept byte for
    byte). head may end mid-character: that is allowed. Raises _CsvEncoding for other text
    (Windows-1252/Latin-1, UTF-16 without a BOM, UTF-32) and ValueError for what is not text."""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE 00 00
        raise _CsvEncoding("UTF-32")
    codec = "utf-16" if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        return codecs.getincrementaldecoder(codec)("strict").decode(head, final=False)
    except UnicodeDecodeError:
        if codec == "utf-16":
            raise ValueError("not UTF-16 text despite its byte-order mark") from None
    if _utf16_without_bom(head):
        raise _CsvEncoding("UTF-16 without a byte-order mark")
    try:
        text = head.decode("cp1252")  # its five unmapped bytes fail: then it is not text at all
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    if _BAD_TEXT_CONTROLS.search(text):
        raise ValueError("contains binary control characters")
    raise _CsvEncoding("an older Windows or Latin-1 encoding")


def _utf16_without_bom(head: bytes) -> bool:
    """Every other byte NUL (ASCII text in UTF-16LE or BE) and the rest decodes as text."""
    pairs = len(head) // 2
    if pairs < 2 or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    for zero_at, codec in ((1, "utf-16-le"), (0, "utf-16-be")):
        if head[zero_at::2][:pairs].count(0) >= 0.9 * pairs and head[1 - zero_at::2][:pairs].count(0) == 0:
            try:
                return not _BAD_TEXT_CONTROLS.search(head[: pairs * 2].decode(codec))
            except UnicodeDecodeError:
                return False
    return False


def _text_problem(head: bytes) -> str | None:
    """Why these bytes are not CSV text, or None. Raises _CsvEncoding for text in another encoding."""
    try:
        text = _csv_text(head)
    except ValueError as exc:
        return str(exc)
    if _BAD_TEXT_CONTROLS.search(text):
        return "contains binary control characters"
    if _MARKUP.search(text):
        return "contains HTML or script markup"
    return None


def _refuse_encoding(exc: _CsvEncoding, field: str) -> NoReturn:
    _refuse(UnsupportedMediaType, "csv_encoding_not_supported",
            f"This CSV file is saved in {exc.args[0]}, which we cannot read reliably. In your spreadsheet "
            f"app choose Save As > \"CSV UTF-8\" and upload that file.", field, f"encoding: {exc.args[0]}")


def _refuse(exc_cls: type, code: str, message: str, field: str, issue: str) -> NoReturn:
    raise exc_cls(code, message, [{"field": field, "issue": issue}])


def check(
    filename: str | None,
    head_bytes: bytes,
    allowed_types: tuple[str, ...] = tuple(ALLOWED),
    field: str = "file",
) -> TypedFile:
    """Type an upload by its first bytes; raise a DomainError with a stable code if it is refused.

    Codes: filename_invalid, file_empty (400); file_type_not_allowed, file_type_mismatch,
    csv_encoding_not_supported (415: a CSV that is text, but not UTF-8 or UTF-16 with a BOM).
    """
    raw = filename or ""
    if not raw.strip() or "\x00" in raw:
        # A NUL in a name is the classic "evil.exe\0.pdf" truncation trick, never an accident.
        _refuse(ValidationError, "filename_invalid", "This file has no usable name.", field,
                "name is empty" if "\x00" not in raw else "name contains a NUL character")
    ext = ext_of(raw)
    if not ext:
        _refuse(ValidationError, "filename_invalid",
                "This file's name has no extension, so its type cannot be checked.", field,
                "name has no extension")
    if not head_bytes:
        _refuse(ValidationError, "file_empty", "This file is empty.", field, "file has 0 bytes")

    detected = detect(head_bytes)
    permitted = [t for t in allowed_types if t in ALLOWED]
    kinds = ", ".join(sorted({t.upper() for t in permitted})) or "none"
    if ext not in permitted:
        _refuse(UnsupportedMediaType, "file_type_not_allowed",
                f"Files ending in .{ext} are not accepted. Accepted types: {kinds}.", field,
                f"detected {detected}")
    said = _EXT_WORDS.get(ext, f"a .{ext} file")
    if ext == "csv" and detected not in ALLOWED[ext] and _utf16_without_bom(head_bytes):
        # libmagic calls BOM-less UTF-16 binary; it is text the person can re-save.
        _refuse_encoding(_CsvEncoding("UTF-16 without a byte-order mark"), field)
    if detected not in ALLOWED[ext]:
        # The contents are a type we know but have switched off (PNG bytes named .jpg, png off).
        known_off = [e for e, types in ALLOWED.items() if detected in types and e not in permitted]
        if known_off and detected not in {"text/plain"}:
            _refuse(UnsupportedMediaType, "file_type_not_allowed",
                    f"This file is {describe_type(detected)}, which is not accepted here. "
                    f"Accepted types: {kinds}.", field, f"detected {detected}")
        _refuse(UnsupportedMediaType, "file_type_mismatch",
                f"This file says it is {said}, but its contents are {describe_type(detected)}.",
                field, f"detected {detected}")
    if ext == "csv":
        try:
            problem = _text_problem(head_bytes)
        except _CsvEncoding as exc:
            _refuse_encoding(exc, field)
        if problem:
            _refuse(UnsupportedMediaType, "file_type_mismatch",
                    f"This file says it is {said}, but its contents are not plain spreadsheet text.",
                    field, f"detected {detected}; {problem}")
    return TypedFile(ext=ext, content_type=CANONICAL[ext], detected=detected)
