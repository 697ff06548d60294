"""A file the scanner could not fully read, through the real path: the portal's form post, a real
clamd with deploy/'s limits, the real worker. It is never served, its uploader is told what to
do, the reviewer sees it, and admins can list every such file."""
from __future__ import annotations

import html as html_lib
import io
import re

import pytest

from core.platform.db import db
from core.platform.models import AuditEvent, EvidenceFile, Submission
from tests.evidence_support import (CLEAN_PDF, pdf_with_embedded_file, run_worker, setup_people, sign_in, stored_keys,
                                   yesterday)

ADVICE = "Send the document without attachments, or split it into smaller files"


@pytest.fixture
def clamd_app(make_app, clamd_server):
    clamd_server.start()
    yield make_app(AV_SCANNER="clamd", CLAMD_URL=clamd_server.url, CLAMD_TIMEOUT_SECONDS=30)
    clamd_server.start()


def _rows(app):
    with app.app_context():
        files = db.session.query(EvidenceFile).order_by(EvidenceFile.id).all()
        submissions = db.session.query(Submission).all()
        for row in files + submissions:
            db.session.expunge(row)
        return files, submissions


def test_the_reported_pdf_is_unscannable_never_served_and_everyone_is_told(clamd_app):
    setup_people(clamd_app)
    owner = clamd_app.test_client()
    sign_in(owner, "owner")
    response = owner.post("/submissions/new", data={
        "activity_code": "EXPLORE", "session_date": yesterday().isoformat(),
        "files": [(io.BytesIO(pdf_with_embedded_file(120)), "report.pdf")]}, content_type="multipart/form-data")
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    run_worker(clamd_app)

    (bomb,), (submission,) = _rows(clamd_app)
    assert (bomb.scan_state, bomb.scan_reason, bomb.scan_signature) == (
        "unscannable", "limits_exceeded", "Heuristics.Limits.Exceeded.MaxFileSize")
    # Kept for an admin to look at, never served; nothing else was written.
    assert stored_keys(clamd_app) == [bomb.storage_key]
    assert submission.status == "changes_requested"
    assert "We could not fully check report.pdf for viruses" in submission.reason and ADVICE in submission.reason
    with clamd_app.app_context():
        assert db.session.query(AuditEvent).filter_by(action="file.unscannable").count() == 1

    for who in ("owner", "reviewer", "admin"):
        client = clamd_app.test_client()
        sign_in(client, who)
        for url in (f"/api/files/{bomb.id}", f"/api/files/{bomb.id}/signed-url"):
            refused = client.get(url)
            assert refused.status_code == 422 and refused.json["code"] == "file_unscannable", (who, url)
            assert ADVICE in refused.json["message"]

    mine = html_lib.unescape(owner.get(f"/submissions/{submission.id}").get_data(as_text=True))
    assert "We could not fully check it for viruses" in mine and ADVICE in mine
    assert f'href="/api/files/{bomb.id}"' not in mine

    reviewer = clamd_app.test_client()
    sign_in(reviewer, "reviewer")
    seen = html_lib.unescape(reviewer.get(f"/review/{submission.id}").get_data(as_text=True))
    assert "Could not be fully checked for viruses" in seen and "Heuristics.Limits.Exceeded.MaxFileSize" in seen
    assert f'data-testid="download-{bomb.id}"' not in seen

    admin = clamd_app.test_client()
    sign_in(admin, "admin")
    listed = html_lib.unescape(admin.get("/admin/unscannable").get_data(as_text=True))
    assert "report.pdf" in listed and "owner@example.com" in listed and "limits_exceeded" in listed
    assert reviewer.get("/admin/unscannable").status_code == 403  # admins only

    # The uploader corrects the submission (issue 17's corrections): the unscannable file must be
    # removed, and the document is sent again without its attachment; review goes ahead.
    kept_fields = {"session_date": submission.session_date.isoformat(), "city": submission.city or "",
                   "note": submission.note or ""}
    refused = owner.post(f"/submissions/{submission.id}/resubmit", data={
        **kept_fields, "files": [(io.BytesIO(CLEAN_PDF), "report-without-attachments.pdf")]},
        content_type="multipart/form-data")
    assert refused.status_code == 400  # still carrying a file nobody may download
    assert "report.pdf could not be used (unscannable); remove it" in html_lib.unescape(refused.get_data(as_text=True))
    response = owner.post(f"/submissions/{submission.id}/resubmit", data={
        **kept_fields, "remove": [str(bomb.id)], "files": [(io.BytesIO(CLEAN_PDF), "report-without-attachments.pdf")]},
        content_type="multipart/form-data")
    assert response.status_code == 302, re.findall(r"class=\"error\"[^>]*>([^<]*)", response.get_data(as_text=True))
    run_worker(clamd_app)
    (bomb, fixed), (submission,) = _rows(clamd_app)
    assert (bomb.scan_state, fixed.scan_state, submission.status) == ("unscannable", "clean", "in_review")
    assert bomb.deleted_at is not None
    assert reviewer.get(f"/api/files/{bomb.id}").status_code != 200
    assert reviewer.get(f"/api/files/{fixed.id}").status_code == 200
    seen = html_lib.unescape(reviewer.get(f"/review/{submission.id}").get_data(as_text=True))
    assert f'data-testid="download-{fixed.id}"' in seen and f'data-testid="download-{bomb.id}"' not in seen


def test_a_submission_with_a_clean_and_an_unscannable_file_goes_back_to_the_uploader(clamd_app):
    people = setup_people(clamd_app)
    from tests.evidence_support import submit

    sid, (clean_id, bomb_id) = submit(clamd_app, people["owner"],
                                      [("notes.pdf", CLEAN_PDF), ("scan.pdf", pdf_with_embedded_file(120))])
    run_worker(clamd_app)
    files, (submission,) = _rows(clamd_app)
    assert [f.scan_state for f in files] == ["clean", "unscannable"]
    assert submission.status == "changes_requested" and "scan.pdf" in submission.reason
    assert sorted(stored_keys(clamd_app)) == sorted(f.storage_key for f in files)


def test_an_admin_scans_a_file_again_once_the_limit_is_raised(clamd_app, clamd_server, make_app, tmp_path):
    """A PDF whose embedded file (zeros only) is past MaxFileSize is unscannable; after the
    operator raises MaxFileSize (here: a second clamd with 200M), "Scan again" makes it clean."""
    import shutil

    from tests.services.clamd import ClamdServer
    from tests.services.ports import free_port

    people = setup_people(clamd_app)
    from tests.evidence_support import submit

    _, (file_id,) = submit(clamd_app, people["owner"], [("big-attachment.pdf", pdf_with_embedded_file(120, b""))])
    run_worker(clamd_app)
    (row,), _ = _rows(clamd_app)
    assert (row.scan_state, row.scan_signature) == ("unscannable", "Heuristics.Limits.Exceeded.MaxFileSize")

    workdir = tmp_path / "clamd-raised"
    (workdir / "tmp").mkdir(parents=True)
    shutil.copytree(clamd_server.workdir / "db", workdir / "db")
    raised = ClamdServer(binary=clamd_server.binary, workdir=workdir, port=free_port())
    raised.write_config()
    raised.config.write_text(raised.config.read_text().replace("MaxFileSize 100M", "MaxFileSize 200M"))
    raised.start()
    try:
        app = make_app(AV_SCANNER="clamd", CLAMD_URL=raised.url, CLAMD_TIMEOUT_SECONDS=30)
        admin = app.test_client()
        sign_in(admin, "admin")
        from tests.test_portal_support import csrf_token

        token = csrf_token(admin, "/admin/unscannable")
        assert admin.post(f"/admin/unscannable/{file_id}/scan-again", data={"csrf_token": token}).status_code == 302
        (row,), _ = _rows(app)
        assert row.scan_state == "pending" and row.scan_reason is None
        assert admin.get(f"/api/files/{file_id}").status_code == 409  # not served while pending
        run_worker(app)
        (row,), _ = _rows(app)
        assert row.scan_state == "clean"
        assert admin.get(f"/api/files/{file_id}").status_code == 200
        again = admin.post(f"/admin/unscannable/{file_id}/scan-again", data={"csrf_token": token}, follow_redirects=True)
        assert "is not unscannable (any more). Nothing was changed." in html_lib.unescape(again.get_data(as_text=True))
        with app.app_context():
            assert db.session.query(AuditEvent).filter_by(action="file.scan_again").count() == 1
    finally:
        raised.stop()
