"""The uploader's pages: the new-submission form (messages next to fields, input kept), My
submissions in plain words, points and badges, and someone else's submission staying hidden."""
from __future__ import annotations

import io
import re
from datetime import datetime, timezone

from core.platform.db import db
from core.platform.models import Submission
from portal.uploader import MY_PAGE_SIZE
from tests.evidence_support import stored_keys
from tests.test_portal_support import flashes, people, png, run_worker, sign_in


def _error_for(html: str, field_id: str) -> str:
    match = re.search(rf'<p class="error" id="{re.escape(field_id)}-error">(.*?)</p>', html, re.S)
    return match.group(1) if match else ""


def test_form_lists_the_catalogue_and_amplify_fields(app):
    people(app)
    client = app.test_client()
    sign_in(client, "owner")
    html = client.get("/submissions/new").get_data(as_text=True)
    for code in ("EXPLORE", "PRESENT", "AMPLIFY"):
        assert f'value="{code}"' in html
    assert 'value="LEARN"' not in html  # Kajabi-only activities are not uploaded
    assert '<label for="counter_peers">Peers trained (Amplify only, 0 to 50)</label>' in html
    assert '<label for="counter_students">Students trained (Amplify only, 0 to 200)</label>' in html
    assert 'enctype="multipart/form-data"' in html and 'name="csrf_token"' in html


def test_each_message_is_next_to_its_field_and_input_is_kept(app):
    people(app)
    client = app.test_client()
    sign_in(client, "owner")
    response = client.post("/submissions/new", data={"activity_code": "AMPLIFY", "session_date": "",
                                                     "counter_peers": "60", "counter_students": "12",
                                                     "note": "Workshop at the library"},
                           content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Give the date of the session." in _error_for(html, "session_date")
    assert "from 0 to 50" in _error_for(html, "counter_peers")
    assert 'value="12"' in html and "Workshop at the library" in html
    assert re.search(r'<option selected value="AMPLIFY">|<option value="AMPLIFY" selected>', html)

    # Problems only core.evidence.uploads can see come back next to their fields too.
    response = client.post("/submissions/new", data={"activity_code": "EXPLORE", "session_date": "2001-01-01",
                                                     "note": "n"}, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert _error_for(html, "session_date") and "Attach at least one file." in _error_for(html, "files")

    response = client.post("/submissions/new", data={"activity_code": "EXPLORE", "session_date": _yesterday(),
                                                     "files": [(io.BytesIO(b"MZ\x90\x00" * 100), "tool.exe")]},
                           content_type="multipart/form-data")
    assert response.status_code == 415
    assert _error_for(response.get_data(as_text=True), "files")
    with app.app_context():
        assert db.session.query(Submission).count() == 0


def _yesterday() -> str:
    from tests.evidence_support import yesterday

    return yesterday().isoformat()


def test_submit_then_my_submissions_in_plain_words(app):
    ids = people(app)
    client = app.test_client()
    sign_in(client, "owner")
    response = client.post("/submissions/new", data={
        "activity_code": "AMPLIFY", "session_date": _yesterday(), "session_start": "10:15", "city": "Leeds",
        "counter_peers": "3", "counter_students": "20",
        "files": [(io.BytesIO(png()), "photo.png"), (io.BytesIO(b"a,b\n1,2\n"), "list.csv")]},
        content_type="multipart/form-data", follow_redirects=True)
    assert response.status_code == 200
    assert any("sent" in m for m in flashes(response))
    with app.app_context():
        s = db.session.query(Submission).one()
        assert (s.user_id, s.counters, s.city, s.session_start.strftime("%H:%M")) == (
            ids["owner"], {"peers": 3, "students": 20}, "Leeds", "10:15")
    html = client.get("/submissions").get_data(as_text=True)
    assert "Checking files for viruses" in html and "photo.png: Being checked for viruses" in html
    run_worker(app)
    html = client.get("/submissions").get_data(as_text=True)
    assert "In review" in html and "photo.png: No virus found" in html
    assert 'data-testid="points-total">0<' in html and "No badges yet." in html


def test_a_file_of_several_mib_goes_through_the_form(make_app):
    # The form parser reads ~1 MiB at a time (core/evidence/form_parsing.py); its buffer must never trip the
    # 1 MiB form-memory limit that guards the text fields.
    app = make_app(MAX_UPLOAD_MB=8)
    people(app)
    client = app.test_client()
    sign_in(client, "owner")
    body = b"day,peers\n" + b"2025-01-15,12\n" * (7 * 1024 * 1024 // 14)
    response = client.post("/submissions/new", data={
        "activity_code": "EXPLORE", "session_date": _yesterday(), "files": [(io.BytesIO(body), "big.csv")]},
        content_type="multipart/form-data")
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    with app.app_context():
        (evidence,) = db.session.query(Submission).one().files
        assert evidence.size_bytes == len(body)


def test_a_file_over_the_limit_is_refused_next_to_its_field_with_the_form_kept(make_app):
    app = make_app(MAX_UPLOAD_MB=1)
    people(app)
    client = app.test_client()
    sign_in(client, "owner")
    over = b"day,peers\n" + b"2025-01-15,12\n" * (1024 * 1024 // 14 + 1)  # a little over 1 MiB
    response = client.post("/submissions/new", data={
        "activity_code": "EXPLORE", "session_date": _yesterday(), "note": "Lisbon workshop",
        "files": [(io.BytesIO(over), "attendance.csv")]}, content_type="multipart/form-data")
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert _error_for(html, "files") == "attendance.csv is larger than the 1 MB limit."
    assert "Lisbon workshop" in html, re.findall(r"<textarea[^>]*>[^<]*<", html)
    assert re.search(r"<option[^>]*selected[^>]*value=\"EXPLORE\"|<option[^>]*value=\"EXPLORE\"[^>]*selected", html)
    with app.app_context():
        assert db.session.query(Submission).count() == 0
    assert stored_keys(app) == []


def test_someone_elses_submission_is_not_found(app):
    ids = people(app)
    from tests.test_portal_support import insert

    [sid] = insert(app, ids["owner"])
    other = app.test_client()
    sign_in(other, "other")
    assert other.get(f"/submissions/{sid}").status_code == 404
    assert other.post(f"/submissions/{sid}/resubmit", data={}).status_code == 404


def test_home_routes_by_role(app):
    people(app)
    for who, where in (("owner", "/submissions"), ("reviewer", "/review"), ("admin", "/review")):
        client = app.test_client()
        sign_in(client, who)
        assert client.get("/").headers["Location"] == where
    assert app.test_client().get("/").headers["Location"] == "/login"


def test_my_submissions_pages_newest_first_and_a_broken_link_starts_over(app):
    from datetime import date, timedelta

    ids = people(app)
    with app.app_context():
        base = datetime(2026, 1, 1, tzinfo=timezone.utc)
        for i in range(MY_PAGE_SIZE + 3):
            db.session.add(Submission(user_id=ids["owner"], activity_code="EXPLORE", status="in_review",
                                      session_date=date(2026, 1, 1) + timedelta(days=i % 20),
                                      created_at=base + timedelta(minutes=i)))
        db.session.commit()
        newest_first = [s.id for s in db.session.query(Submission).order_by(Submission.created_at.desc())]
    client = app.test_client()
    sign_in(client, "owner")
    first = client.get("/submissions").get_data(as_text=True)
    shown = [int(n) for n in re.findall(r'href="/submissions/(\d+)"', first)]
    assert shown == newest_first[:MY_PAGE_SIZE]
    older = re.search(r'href="(/submissions\?after=[^"]+)" rel="next">Older submissions', first).group(1)
    second = client.get(older.replace("&amp;", "&")).get_data(as_text=True)
    assert [int(n) for n in re.findall(r'href="/submissions/(\d+)"', second)] == newest_first[MY_PAGE_SIZE:]
    assert "Older submissions" not in second and ">Newest<" in second
    broken = client.get("/submissions?after=not-a-cursor", follow_redirects=True)
    assert any("start from the first page" in m for m in flashes(broken))
