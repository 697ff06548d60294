"""One cleaner for file names, used when an upload is recorded and again when any name goes into
a Content-Disposition header, so both see the same rules."""
from __future__ import annotations

import re
import unicodedata

MAX_NAME_CHARS = 120


def sanitise_filename(name: str | None, fallback: str = "file") -> str:
    """A display-safe base name: no path, controls, leading dots or runs of spaces; <= 120 chars."""
    text = unicodedata.normalize("NFC", name or "")
    # Both separators: a Windows browser may send C:\Users\me\report.pdf.
    text = re.split(r"[/\\]", text)[-1]
    # Whitespace first (a tab or newline becomes a space), then what is left of the controls.
    text = re.sub(r"\s+", " ", text)
    # Cc is controls and NUL; Cf includes U+202E, which disguises "evil\u202efdp.exe" as "...exe.pdf".
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))
    # Characters Windows refuses in names, and the quote that would end a header's filename="...".
    text = re.sub(r'[<>:"|?*]', "_", text).strip()
    text = text.lstrip(". ").rstrip(". ")
    if len(text) > MAX_NAME_CHARS:
        stem, dot, ext = text.rpartition(".")
        if dot and stem and 0 < len(ext) <= 16:
            stem = stem[: MAX_NAME_CHARS - len(ext) - 1].rstrip(". ")
            text = f"{stem}.{ext}" if stem else text[:MAX_NAME_CHARS]
        else:
            text = text[:MAX_NAME_CHARS].rstrip(". ")
    return text or fallback
