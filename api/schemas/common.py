"""Types shared by the /api schemas, and validation -> the 400 envelope.

Limits come from the database columns they end up in (core/platform/models.py): ids are bigint,
strings fit their VARCHAR, and no string holds a character the store cannot keep.
"""
from __future__ import annotations

from typing import Annotated, Any

import pydantic
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from core.platform.errors import ValidationError
from core.platform.numbers import BIGINT_MAX

# No C0 control character and no DEL (the JSON reader has already refused NUL and lone
# surrogates anywhere in a body); written so that it is both a Rust and an ECMA-262 regex.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


def text(max_length: int, min_length: int = 1):
    """A JSON string of 1..max_length printable characters (no coercion from other types)."""
    return Annotated[str, StringConstraints(strict=True, min_length=min_length, max_length=max_length,
                                            pattern=PRINTABLE)]


BigId = Annotated[int, Field(strict=True, ge=1, le=BIGINT_MAX)]


def _ascii_digits(value: Any) -> Any:
    # Query strings: ASCII digits only ("²".isdigit() is True, and int() refuses it), and at most
    # 19 of them, so a huge number is refused before int() spends time on it.
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit() or len(value) > 19:
            raise ValueError("must be a whole number")
        return int(value)
    return value


def query_int(low: int, high: int, description: str):
    """An integer query parameter low..high, written as ASCII digits."""
    return Annotated[int, Field(strict=True, ge=low, le=high, description=description), BeforeValidator(_ascii_digits)]


def fits_after(transform, max_length: int, issue: str):
    """After-validator: the value still fits its column once the server has transformed it
    (lower-casing can lengthen a string: 'İ'.lower() is two characters)."""
    def check(value: str | None) -> str | None:
        if value is not None and len(transform(value)) > max_length:
            raise ValueError(issue)
        return value
    return AfterValidator(check)


def field_path(loc: tuple, data: Any, root: str = "body", missing: bool = False) -> str:
    """pydantic's loc -> `payload[1].attributes.name`. Follows the input itself, so the names
    pydantic adds for union members and tagged items ('int', 'contacts', ...) are dropped; a
    `missing` field (the last part, absent from the input) is kept."""
    parts: list[str] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            parts.append(f"[{part}]")
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and part in node:
            parts.append(f".{part}" if parts else part)
            node = node[part]
        elif last and missing and isinstance(part, str) and isinstance(node, dict):
            parts.append(f".{part}" if parts else part)
    return "".join(parts) or root


def details(exc: pydantic.ValidationError, data: Any, root: str = "body") -> list[dict]:
    """One detail per failing field (several union members' complaints about one field are
    joined), in the order pydantic found them."""
    merged: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        path = field_path(error["loc"], data, root, error["type"] == "missing")
        message = error["msg"].removeprefix("Value error, ")
        if message not in merged.setdefault(path, []):
            merged[path].append(message)
    return [{"field": path, "issue": "; ".join(issues)[:300]} for path, issues in merged.items()]


def validate(model, data: Any, code: str, message: str, root: str = "body"):
    """model.model_validate(data), or ValidationError(code) (400) naming each failing field."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = details(exc, data, root)
        names = ", ".join(p["field"] for p in problems[:5])
        raise ValidationError(code, f"{message} Failing: {names}.", problems) from None


def validate_query(model, args, code: str = "invalid_parameter") -> Any:
    """The model's fields from a query string (first value of each; unknown names ignored), or
    ValidationError `code` (400) naming each bad one. An empty value is a bad value, not an
    absent one."""
    data = {name: args.get(name) for name in model.model_fields if name in args}
    return validate(model, data, code, "Some parameters are not valid.", "query")
