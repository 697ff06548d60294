"""The PDF active-content check: does a PDF declare JavaScript or an action that runs by itself?

Byte level on purpose: no PDF library runs on untrusted bytes in the web process (a crash there
would take a web worker down). The file's raw bytes are searched, and so is every FlateDecode
stream after inflating it with zlib under a budget, so objects kept in compressed object streams
(/ObjStm) are seen as a reader sees them. Names are compared with #xx escapes decoded and case
folded (a reader is case-sensitive; folding only refuses more).

What is refused (ISO 32000-1 12.6 "Actions", 12.6.4 action types, 7.5.7 object streams):
- names that only serve scripts or automatic behaviour, wherever they appear: /JavaScript,
  /Launch, /SubmitForm, /ImportData, /GoToE, /RichMedia; /JS and /AA when given a value;
- /OpenAction, unless it is a destination (an array) or a /GoTo action without /Next, inline or
  by reference (a reference to an object we could not read is refused);
- a PDF we cannot check: an object stream that is not plain FlateDecode (other filters,
  predictors), cannot be inflated (damaged or encrypted) or inflates past the budget.
A link a person clicks (/Annot /Link with /A <</S/URI ...>>) stays accepted: /URI and /GoToR are
refused only as the target of /OpenAction or inside /AA.
"""
from __future__ import annotations

import bisect
import io
import mmap
import re
import zlib
from dataclasses import dataclass
from typing import BinaryIO

TOTAL_BUDGET = 64 * 1024 * 1024  # inflated bytes per file, all streams together
STREAM_CAP = 16 * 1024 * 1024  # inflated bytes per stream
READ_IN_MEMORY = 1024 * 1024  # smaller bodies are read; larger ones are spooled on disk and mapped
MAX_STREAMS = 50_000  # stream keywords looked at; more is refused as uncheckable (bounds the CPU spent)
MAX_OPEN_ACTIONS = 16  # /OpenAction entries read; one per catalog (and incremental update) is normal

# Refused wherever they appear: nothing in evidence needs them.
ALWAYS = {b"javascript": "JavaScript", b"launch": "Launch", b"submitform": "SubmitForm",
          b"importdata": "ImportData", b"gotoe": "GoToE", b"richmedia": "RichMedia"}
# Refused when they carry a value (a string, dictionary or reference): short names also occur
# as resource names, where they are followed by an operator instead.
VALUED = {b"js": "JS", b"aa": "AA"}

# Action types (ISO 32000-2 12.6.4) other than GoTo, which only shows a page of this file.
ACTIONS = ("GoToR", "GoToE", "GoToDp", "Launch", "Thread", "URI", "Sound", "Movie", "Hide", "Named", "SubmitForm",
           "ResetForm", "ImportData", "SetOCGState", "Rendition", "Trans", "GoTo3DView", "JavaScript",
           "RichMediaExecute")


# Case folded (re.I); #xx escapes are decoded first, in the texts that have any (see _Scan.text).
_WATCH = re.compile(
    rb"/(?:s\s{0,64}/(?P<kind>" + b"|".join(a.lower().encode() for a in sorted(ACTIONS, key=len, reverse=True))
    + rb")|(?P<name>javascript|launch|submitform|importdata|gotoe|richmedia|openaction|next|js|aa))"
    + rb"(?![a-z0-9_.+\-#])", re.I)
_ESCAPED_NAME = re.compile(rb"/[^\s/<>\[\]()%{}]{0,64}#[0-9A-Fa-f]{2}")
_SHOWN = {n.lower(): n for n in ACTIONS + ("GoTo", "Next")}
_NAME = re.compile(rb"/((?:[A-Za-z0-9_.+\-]|#[0-9A-Fa-f]{2}){1,64})")
_HEX = re.compile(rb"#([0-9A-Fa-f]{2})")
# Bounded repeats and a digit lookbehind: a long run of digits must not make these quadratic.
_VALUE = re.compile(rb"\s{0,64}(?:<|\(|\d{1,10}\s{1,64}\d{1,5}\s{1,64}R\b)")
_REF = re.compile(rb"\s{0,64}(\d{1,10})\s{1,64}\d{1,5}\s{1,64}R\b")
_OBJ = re.compile(rb"obj\b")  # a literal first: scanning for digits made this the slowest step
_OBJ_NUMBER = re.compile(rb"(?<!\d)(\d{1,10})\s{1,8}\d{1,5}\s{0,8}\Z")
_STREAM = re.compile(rb"stream(?:\r\n|\n|\r)")  # "endstream" is skipped in _streams (a lookbehind is slower)
_INT = re.compile(rb"\d+")
_S_VALUE = re.compile(rb"\s{0,64}/((?:[A-Za-z0-9_.+\-]|#[0-9A-Fa-f]{2}){1,64})")


@dataclass(frozen=True)
class Finding:
    code: str  # "pdf_active_content" or "pdf_uncheckable"
    reason: str  # for details[].issue, e.g. "PDF names a /JavaScript action"


class _Uncheckable(Exception):
    pass


def _decode(raw: bytes) -> bytes:
    return (_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), raw) if b"#" in raw else raw).lower()


def _shown(name: bytes) -> str:
    text = name.decode("latin-1")
    return _SHOWN.get(text) or ALWAYS.get(name) or text


def _balanced_dict(text, start: int, limit: int = 8192) -> bytes:
    """The dictionary opening with << at `start`, up to its matching >> (at most `limit` bytes)."""
    depth, i, end = 0, start, min(len(text), start + limit)
    while i < end - 1:
        pair = text[i:i + 2]
        if pair == b"<<":
            depth, i = depth + 1, i + 2
            continue
        if pair == b">>":
            depth, i = depth - 1, i + 2
            if depth == 0:
                return bytes(text[start:i])
            continue
        i += 1
    return bytes(text[start:end])


class _Scan:
    """Names found in one file's texts (the raw bytes and each inflated stream)."""

    def __init__(self) -> None:
        self.budget = TOTAL_BUDGET
        self.actions: dict[int, set[bytes]] = {}  # object number -> its /S values (and b"next")
        self.open_refs: list[int] = []
        self.objects: set[int] = set()  # object numbers seen (top level and in object streams)
        self.open_actions = 0

    def text(self, text) -> str:
        """Scan one text; return a reason when it is refused outright, else ''."""
        if _ESCAPED_NAME.search(text):
            text = _HEX.sub(lambda m: bytes([int(m.group(1), 16)]), text)  # a copy, names as a reader reads them
        heads = []
        for m in _OBJ.finditer(text):
            number = _OBJ_NUMBER.search(bytes(text[max(0, m.start() - 24):m.start()]))
            if number:
                heads.append((m.start(), int(number.group(1))))
        starts = [h[0] for h in heads]
        self.objects.update(h[1] for h in heads)
        for m in _WATCH.finditer(text):
            kind, name = (g.lower() if g else None for g in m.group("kind", "name"))
            if kind in ALWAYS or name in ALWAYS:
                return f"PDF names a /{ALWAYS[kind or name]} action"
            if name in VALUED and _VALUE.match(text, m.end()):
                return f"PDF has {'JavaScript (/JS)' if name == b'js' else 'additional actions (/AA), which run by themselves'}"
            if name == b"openaction":
                self.open_actions += 1
                if self.open_actions > MAX_OPEN_ACTIONS:
                    return f"PDF has more than {MAX_OPEN_ACTIONS} /OpenAction entries"
                reason = self._open_action(text, m.end())
                if reason:
                    return reason
            elif (kind or name == b"next") and heads:
                # Remember which object holds an action other than GoTo, for /OpenAction N 0 R.
                at = bisect.bisect_right(starts, m.start()) - 1
                if at >= 0:
                    self.actions.setdefault(heads[at][1], set()).add(kind or b"next")
        return ""

    def _open_action(self, text, at: int) -> str:
        rest = bytes(text[at:at + 32]).lstrip()
        if rest.startswith(b"["):
            return ""  # a destination: which page to show
        ref = _REF.match(text, at)
        if ref:
            self.open_refs.append(int(ref.group(1)))
            return ""
        if rest.startswith(b"<<"):
            inline = _balanced_dict(text, at + len(bytes(text[at:at + 32])) - len(rest))
            names = [_decode(n) for n in _NAME.findall(inline)]
            kinds = [names[i + 1] for i, n in enumerate(names[:-1]) if n == b"s"]
            if kinds == [b"goto"] and b"next" not in names:
                return ""
            return f"PDF runs a /{_shown((kinds or [b'?'])[0])} action when opened (/OpenAction)"
        return "PDF has an /OpenAction that could not be read"

    def resolve(self) -> str:
        for number in self.open_refs:
            if number not in self.objects:
                return "PDF has an /OpenAction whose target could not be found to check"
            kinds = self.actions.get(number)
            if kinds is None:
                continue  # an object with no /S: a destination
            if kinds - {b"goto"}:
                shown = sorted(kinds - {b"goto", b"next"}) or [b"Next"]
                return f"PDF runs a /{_shown(shown[0])} action when opened (/OpenAction)"
        return ""

    def inflate(self, buf, start: int, cap: int) -> tuple[bytes, bool]:
        """Inflate the zlib stream at `start`; return (data, complete). Raises zlib.error."""
        d, out, pos, size = zlib.decompressobj(), [], start, 0
        room = min(cap, self.budget)
        while not d.eof and size < room and pos < len(buf):
            chunk = buf[pos:pos + 1024 * 1024]
            pos += len(chunk)
            data = d.decompress(chunk, room - size)
            while True:
                out.append(data)
                size += len(data)
                if d.eof or size >= room or not d.unconsumed_tail:
                    break
                data = d.decompress(d.unconsumed_tail, room - size)
        self.budget -= size
        return b"".join(out), d.eof


def _objstm_text(dictionary: bytes, data: bytes) -> bytes:
    """An object stream's objects as 'N 0 obj ...' text, so references to them resolve."""
    first = re.search(rb"/First\s+(\d+)", dictionary)
    offset = int(first.group(1)) if first else 0
    numbers = [int(n) for n in _INT.findall(data[:offset])]
    pairs = list(zip(numbers[0::2], numbers[1::2]))
    parts = []
    for i, (number, rel) in enumerate(pairs):
        end = offset + pairs[i + 1][1] if i + 1 < len(pairs) else len(data)
        parts.append(b"%d 0 obj\n" % number + data[offset + rel:end] + b"\nendobj\n")
    return b"".join(parts) or data


def _streams(buf, scan: _Scan):
    """Yield the inflated text of each FlateDecode stream (object streams as objects)."""
    count = 0
    for m in _STREAM.finditer(buf):
        if buf[max(0, m.start() - 3):m.start()] == b"end":
            continue
        count += 1
        if count > MAX_STREAMS:
            raise _Uncheckable(f"PDF has more than {MAX_STREAMS} streams")
        head = bytes(buf[max(0, m.start() - 1024):m.start()])
        obj = head.rfind(b"obj")
        dictionary = head[obj + 3:] if obj >= 0 else head
        names = [_decode(n) for n in _NAME.findall(dictionary)]
        objstm = b"objstm" in names
        filters = [n for n in names if n in (b"flatedecode", b"fl", b"asciihexdecode", b"ascii85decode", b"lzwdecode",
                                             b"runlengthdecode", b"ahx", b"a85", b"lzw", b"rl", b"crypt")]
        if not filters:
            continue  # unfiltered: already in the raw bytes
        if not objstm and (b"image" in names or b"xref" in names):
            continue  # pixels or the cross-reference table: never read as objects, and the bulk of big files
        if filters not in ([b"flatedecode"], [b"fl"]) or b"decodeparms" in names or b"dp" in names:
            if objstm:
                raise _Uncheckable("PDF keeps objects in a stream we cannot read (its filter is not plain FlateDecode)")
            continue  # a picture, font or page content: it cannot declare actions
        try:
            data, complete = scan.inflate(buf, m.end(), STREAM_CAP)
        except zlib.error:
            if objstm:
                raise _Uncheckable("PDF keeps objects in a compressed stream that cannot be inflated "
                                   "(damaged or encrypted)") from None
            continue
        if objstm and not complete:
            raise _Uncheckable(f"PDF's compressed object streams inflate past {STREAM_CAP // 2**20} MiB "
                               f"each or {TOTAL_BUDGET // 2**20} MiB in all")
        yield _objstm_text(dictionary, data) if objstm else data


def find(stream: BinaryIO, size: int) -> Finding | None:
    """Check the PDF in `stream` (seekable, `size` bytes from offset 0); None when it declares no
    JavaScript and no automatic action. Reads the stream once more (mapped when spooled on disk)
    and inflates at most TOTAL_BUDGET bytes. Leaves the stream at offset 0. Raises nothing for any
    input: a file it cannot check is a Finding with code "pdf_uncheckable"."""
    stream.seek(0)
    mapped = None
    try:
        if size > READ_IN_MEMORY:
            try:
                mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
                mapped = None
        buf = mapped if mapped is not None else stream.read(size)
        scan = _Scan()
        reason = scan.text(buf)
        if reason:
            return Finding("pdf_active_content", reason)
        try:
            for text in _streams(buf, scan):
                reason = scan.text(text)
                if reason:
                    return Finding("pdf_active_content", reason)
        except _Uncheckable as exc:
            return Finding("pdf_uncheckable", str(exc))
        reason = scan.resolve()
        return Finding("pdf_active_content", reason) if reason else None
    finally:
        if mapped is not None:
            mapped.close()
        stream.seek(0)
