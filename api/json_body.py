"""A strict JSON reader for request bodies: what RFC 8259 and the database can hold, nothing more.

Python's `json` is lenient where a door must not be: it guesses UTF-16/32 from bytes, takes `NaN`,
`Infinity` and numbers like `1e999` (which become inf), keeps the last of duplicate keys, and
raises RecursionError on deep nesting. PostgreSQL refuses NUL in text, and psycopg refuses lone
surrogates. Every refusal here is a 400 envelope (never a 500), decided before any rule runs:

- `invalid_encoding`  the body is not UTF-8 (RFC 8259 section 8.1)
- `invalid_json`      not JSON, or JSON outside the standard (NaN, Infinity, a number too large
                      for a double, a duplicate key), nested deeper than MAX_DEPTH, or a string or
                      key holding NUL, another control character, or a lone surrogate
"""
from __future__ import annotations

import json
import math
import re

from core.platform.errors import PayloadTooLarge, UnsupportedMediaType, ValidationError

# Kajabi's documented hook body is 4 deep ({payload: [{attributes: {...}}]}); room for custom fields.
MAX_DEPTH = 16

# C0 controls except tab, LF and CR (which may appear in free text such as a contact's name),
# DEL, and UTF-16 surrogates (legal only in pairs, and a pair never survives json.loads as two).
# Refused in any string or key: C0 controls but tab/LF/CR (PostgreSQL refuses NUL), DEL and C1
# controls, lone surrogates (psycopg refuses them), line/paragraph separators, the bidi embedding,
# override and isolate controls and the other Bidi_Control marks (U+061C, U+200E, U+200F: they
# make a stored tag or e-mail display as something else), and all 66 Unicode noncharacters
# (U+FDD0-U+FDEF and the last two code points of every plane).
_NONCHARACTER_PAIRS = "".join(f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17))
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029"
                        "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufdd0-\ufdef" + _NONCHARACTER_PAIRS + "]")
MAX_EXPONENT = 400  # a double's range is about 1e-324..1e308; PostgreSQL's numeric refuses far larger exponents
MAX_NUMBER_DIGITS = 40  # far above any id (bigint has 19 digits); Python's own limit message leaked
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")


class _Refused(ValueError):
    pass


def _constant(name: str):
    raise _Refused(f"{name} is not a JSON number")


def _float(text: str) -> float:
    """A JSON fraction or exponent number as a float, refused when a double cannot hold it: past
    its range (inf), under it (a non-zero literal read as 0.0: 1e-99999999 was stored as written,
    and PostgreSQL's numeric cannot read it, so `payload::jsonb` failed for the whole table), or
    longer than MAX_NUMBER_DIGITS."""
    if len(text) > MAX_NUMBER_DIGITS + 8:  # digits, a sign, a point and a short exponent
        raise _Refused(f"a number of {len(text)} characters is longer than any this service takes")
    mantissa, _, exponent = text.lower().partition("e")
    if exponent and abs(int(exponent)) > MAX_EXPONENT:  # 0e-99999999 too: numeric refuses it
        raise _Refused(f"the number {text[:20]} is out of range")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:20]} is too large")
    if value == 0.0 and any(c in "123456789" for c in mantissa):
        raise _Refused(f"the number {text[:20]} is too small to hold")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _Refused(f"a number of {len(text)} digits is longer than any this service takes")
    return int(text)


def _object(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"the key {key[:40]!r} appears twice in one object")
        out[key] = value
    return out


def depth(raw: bytes) -> int:
    """Deepest nesting of arrays/objects in `raw`, counted on the bytes outside strings (so a
    bracket inside a string does not count). Linear in len(raw), no recursion."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw))
    level = deepest = 0
    for byte in brackets:
        level += 1 if byte in b"[{" else -1
        deepest = max(deepest, level)
    return deepest


def _bad_string(value, path: str = "") -> str | None:
    """Path of the first string or key holding a character the store cannot keep, else None."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _BAD_CHARS.search(item):
                return where or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                if _BAD_CHARS.search(key):
                    return (f"{where}." if where else "") + "<key>"
                stack.append((child, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None


def read_json(raw: bytes, *, max_depth: int = MAX_DEPTH):
    """Bytes -> the JSON value (dict, list, str, int, float, bool or None), or ValidationError
    (400) with code `invalid_encoding` or `invalid_json` and a detail naming the problem."""
    try:
        text = raw.decode("utf-8")  # strict: also refuses UTF-8-encoded surrogates (CESU-8)
    except UnicodeDecodeError as exc:
        raise ValidationError("invalid_encoding", "The body must be UTF-8 encoded JSON.",
                              [{"field": "body", "issue": f"not UTF-8 at byte {exc.start}"}]) from None
    # The usual hook has too few brackets to be that deep, which counting shows cheaply.
    if raw.count(b"[") + raw.count(b"{") > max_depth and depth(raw) > max_depth:
        raise ValidationError("invalid_json", f"The body is nested deeper than {max_depth} levels.",
                              [{"field": "body", "issue": f"nesting deeper than {max_depth}"}])
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int,
                           object_pairs_hook=_object)
    except _Refused as exc:
        raise ValidationError("invalid_json", "The body is not standard JSON.",
                              [{"field": "body", "issue": str(exc)}]) from None
    except (ValueError, RecursionError) as exc:  # RecursionError only if MAX_DEPTH were huge
        raise ValidationError("invalid_json", "The body is not valid JSON.",
                              [{"field": "body", "issue": str(exc)[:200]}]) from None
    # A string's characters are in the text as they are, or came from an escape: a text with no
    # escape and no such character holds no such string, and the walk (most of a hook's check) is
    # skipped. A match anywhere, inside a string or not, still walks to name the field.
    where = _bad_string(value) if "\\" in text or _BAD_CHARS.search(text) else None
    if where is not None:
        raise ValidationError("invalid_json", "The body holds a character that cannot be stored "
                                              "(a control character, a lone surrogate, a bidi control or a noncharacter).",
                              [{"field": where, "issue": "control character, lone surrogate, bidi control or noncharacter"}])
    return value


def read_limited(request, limit: int) -> bytes:
    """The request body, at most `limit` bytes, else PayloadTooLarge `payload_too_large` (413).
    Reads one byte past the limit, so a chunked body (no Content-Length) or one lying about its
    length is caught without reading it all."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge("payload_too_large", f"This body is limited to {limit // 1024} KiB.")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge("payload_too_large", f"This body is limited to {limit // 1024} KiB.")
    return raw


def require_json(request) -> None:
    """Refuse a body not sent as JSON: UnsupportedMediaType `unsupported_media_type` (415) unless
    Content-Type is application/json or a +json type (RFC 6838 section 4.2.8), parameters aside.
    JSON has no charset but UTF-8 (RFC 8259 section 8.1); read_json refuses other bytes."""
    mimetype = request.mimetype
    kind, _, subtype = mimetype.partition("/")
    if not (kind == "application" and (subtype == "json" or (subtype.endswith("+json") and len(subtype) > 5))):
        raise UnsupportedMediaType("unsupported_media_type", "Send the body as application/json.",
                                   [{"field": "Content-Type", "issue": f"got {mimetype or 'none'}"}])
