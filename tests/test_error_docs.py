"""docs/errors.md documents every error code the code can answer with, so a client author can
rely on the list. A new code without a line in the doc fails here."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A DomainError (or subclass) constructed with a literal code, or a refusal helper given one.
RAISE = re.compile(r"\b(?:[A-Za-z]*(?:Error|Conflict|NotFound|Unavailable|Limited|TooLarge|MediaType|"
                   r"Unauthenticated|Throttled|Gone)|_refuse\([^,]+,|super\(\)\.__init__)\s*\(?\s*\"([a-z][a-z0-9_]+)\"")
HTTP_CODES = {"bad_request", "unauthenticated", "forbidden", "not_found", "method_not_allowed", "conflict",
              "payload_too_large", "unsupported_media_type", "unprocessable", "rate_limited", "unavailable",
              "csrf_failed", "internal_error"}


def codes_in_code() -> set[str]:
    found = set()
    for folder in ("core", "api", "portal", "commands", "jobs"):
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    found |= set(RAISE.findall(open(os.path.join(dirpath, name), encoding="utf-8").read()))
    return found


def test_every_code_is_documented():
    doc = open(os.path.join(ROOT, "docs", "errors.md"), encoding="utf-8").read()
    documented = set(re.findall(r"^\| `([a-z][a-z0-9_]+)` \|", doc, re.M))
    codes = codes_in_code() | HTTP_CODES | {"cap_reached", "duplicate_event", "unmatched_contact"}
    assert len(codes) > 40, "the code scanner found suspiciously few codes"
    missing = sorted(codes - documented)
    assert not missing, f"docs/errors.md lacks: {missing}"
