"""Helpers shared by the portal tests (no tests here). Submissions that must look real go through
core.evidence.uploads and a real RQ worker (tests/evidence_support.py); queue tests that need many rows
insert them directly, which is faster and exercises only the queue."""
from __future__ import annotations

import html as html_lib
import re
from datetime import date, datetime, timedelta, timezone

from core.accounts.users import create_user
from core.platform.db import db
from core.platform.models import EvidenceFile, Submission
from tests.evidence_support import PASSWORD, png, run_worker, setup_people, sign_in, submit  # noqa: F401


def people(app) -> dict[str, int]:
    """owner, other (uploaders), reviewer, reviewer2, admin; password PASSWORD for all."""
    ids = setup_people(app)
    with app.app_context():
        user, _ = create_user("reviewer2@example.com", "reviewer", PASSWORD, name="Rita Second")
        db.session.commit()
        ids["reviewer2"] = user.id
    return ids


def in_review(app, user_id: int, activity: str = "EXPLORE", **kwargs) -> tuple[int, list[int]]:
    """A real submission with a PNG, scanned by a real worker, so it is in review."""
    submission_id, file_ids = submit(app, user_id, [("evidence.png", png())], activity, **kwargs)
    run_worker(app)
    with app.app_context():
        assert db.session.get(Submission, submission_id).status == "in_review"
    return submission_id, file_ids


def insert(app, user_id: int, n: int = 1, *, status: str = "in_review", activity: str = "EXPLORE",
           session_date: date | None = None, start: datetime | None = None, **fields) -> list[int]:
    """n rows straight into the table, created one minute apart (for ordering tests)."""
    start = start or datetime(2024, 1, 1, tzinfo=timezone.utc)
    ids = []
    with app.app_context():
        for i in range(n):
            row = Submission(user_id=user_id, activity_code=activity, status=status,
                             session_date=session_date or date(2024, 1, 1) + timedelta(days=i % 20),
                             created_at=start + timedelta(minutes=i), counters=fields.pop("counters", {}), **fields)
            db.session.add(row)
            db.session.flush()
            ids.append(row.id)
        db.session.commit()
    return ids


def add_file(app, submission_id: int, *, sha256: str = "ab" * 32, scan_state: str = "clean") -> int:
    with app.app_context():
        s = db.session.get(Submission, submission_id)
        row = EvidenceFile(submission_id=s.id, user_id=s.user_id, activity_code=s.activity_code,
                           storage_key=f"evidence/{s.user_id}/{s.activity_code}/{s.id}-{sha256[:6]}.png",
                           original_name="x.png", ext="png", content_type="image/png", size_bytes=10, sha256=sha256,
                           scan_state=scan_state)
        db.session.add(row)
        db.session.commit()
        return row.id


def flashes(response) -> list[str]:
    html = response.get_data(as_text=True)
    return [html_lib.unescape(re.sub(r"\s+", " ", m).strip()) for m in re.findall(r'<p class="flash[^"]*">(.*?)</p>', html, re.S)]


def csrf_token(client, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)
