"""Runs (retention and backfill) in plain words for the admin pages: no `None`, no raw
`dry_run: False`, no microseconds. Jinja filters for every template (registered on import)."""
from __future__ import annotations

from datetime import datetime

from portal.blueprint import bp

COUNT_WORDS = {
    "objects_deleted": "files deleted", "thumbnails_deleted": "thumbnails deleted",
    "rows_marked": "file records marked deleted", "failed": "could not be deleted", "users": "users checked",
    "kajabi_anonymised": "Kajabi payloads anonymised", "items": "items", "points": "points",
    "added": "added", "capped": "capped", "duplicate": "already there", "skipped": "skipped",
    "error": "error",
}
DRY_COUNT_WORDS = {"objects_deleted": "files that would be deleted",
                   "thumbnails_deleted": "thumbnails that would be deleted",
                   "rows_marked": "file records that would be marked deleted"}
PARAM_WORDS = {"days": "keep evidence for {} days", "cutoff": "older than {}", "users": "{} users",
               "file": "file {}"}
STATUS_WORDS = {"running": "Running", "queued": "Queued", "finished": "Finished", "failed": "Failed",
                "dry_run": "Dry run (nothing deleted)", "planned": "Planned", "verified": "Verified",
                "applied": "Applied"}


def when(value) -> str:
    """'2026-11-30 09:58 UTC' from a datetime or an ISO string; '' for nothing."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.strftime("%Y-%m-%d %H:%M UTC")


def param_words(params: dict | None) -> list[str]:
    out = []
    order = list(PARAM_WORDS)
    for key, value in sorted((params or {}).items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 99, kv[0])):
        if value is None or key == "dry_run":
            continue
        if key == "cutoff":
            value = when(value)
        out.append(PARAM_WORDS.get(key, key.replace("_", " ") + ": {}").format(value))
    return out


def count_words(counts: dict | None, dry: bool = False) -> list[str]:
    """'3 files deleted', ...; a count that was not taken (None: a dry run anonymises nothing) is left out."""
    out = []
    for key, value in (counts or {}).items():
        if value is None or key in ("dry_run", "cutoff"):
            continue
        words = (DRY_COUNT_WORDS.get(key) if dry else None) or COUNT_WORDS.get(key, key.replace("_", " "))
        out.append(f"{words}: {value}" if key == "error" else f"{value} {words}")
    return out


def status_word(status: str) -> str:
    return STATUS_WORDS.get(status, status.replace("_", " ").capitalize())


for _name, _filter in (("when", when), ("param_words", param_words), ("count_words", count_words),
                      ("run_status", status_word)):
    bp.add_app_template_filter(_filter, _name)
