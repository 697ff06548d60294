"""Previews for reviewers, made by the real RQ worker (the media queue's forked work horse, the
PDF renderer in a limited child of it): every hostile PDF ends in a final preview state in bounded
time and the worker goes on; images get a larger EXIF-free view and a perceptual hash; CSVs a
table with formula cells marked; nothing is served unless the file is clean."""
from __future__ import annotations

import hashlib
import io
import json
import os
import uuid

from PIL import Image
from rq.job import JobStatus
from sqlalchemy import select

from core.evidence.csv_preview import csv_table, is_formula
from core.evidence.previews import preview_prefix
from core.platform.db import db
from core.platform.models import EvidenceFile
from core.platform.services import services
from tests import pdf_samples
from tests.evidence_support import CSV, run_worker, setup_people, sign_in, submit
from tests.test_portal_support import insert
from tests.services.processes import children
from tests.test_thumbnails import camera_jpeg


def stored(app, user_id: int, name: str, data: bytes, *, scan_state: str = "clean") -> int:
    """A file stored and recorded as already scanned, without the upload's own checks (which
    refuse a PDF naming JavaScript): the previews must be safe even for what slipped past them."""
    submission_id = insert(app, user_id)[0]
    with app.app_context():
        ext = name.rsplit(".", 1)[1]
        row = EvidenceFile(submission_id=submission_id, user_id=user_id, activity_code="EXPLORE",
                           uuid=str(uuid.uuid4()), original_name=name, ext=ext, content_type="application/pdf",
                           size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), scan_state=scan_state)
        row.storage_key = f"evidence/{user_id}/EXPLORE/{row.uuid}.{ext}"
        services().storage.put(row.storage_key, io.BytesIO(data), len(data))
        db.session.add(row)
        db.session.commit()
        return row.id


def enqueue_previews(app, file_ids: list[int]):
    with app.app_context():
        q = services().queues
        jobs = [q.enqueue("media", "jobs.previews.make_preview", i, timeout=120) for i in file_ids]
        after = q.enqueue("media", "os.getpid")
    return jobs, after


def test_hostile_pdfs_end_in_a_final_state_in_bounded_time_and_the_worker_goes_on(make_app):
    app = make_app(PREVIEW_TIME_LIMIT_SECONDS="3", PREVIEW_MEMORY_MB="256")
    owner = setup_people(app)["owner"]
    files = {name: stored(app, owner, f"{name}.pdf", data) for name, data in (
        ("javascript", pdf_samples.with_javascript()), ("stall", pdf_samples.stalling()),
        ("crash", pdf_samples.memory_hog()),
        ("thousands", pdf_samples.pages(10_000)), ("broken", pdf_samples.broken()))}
    jobs, after = enqueue_previews(app, list(files.values()))
    run_worker(app)

    for job in jobs:
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED, job.latest_result().exc_string
    after.refresh()
    assert after.get_status() == JobStatus.FINISHED, "the worker stopped after the hostile PDFs"
    with app.app_context():
        state = {name: db.session.get(EvidenceFile, i) for name, i in files.items()}
        assert (state["javascript"].preview_state, state["javascript"].preview_pages) == ("made", 1)
        assert (state["thousands"].preview_state, state["thousands"].preview_pages) == ("made", 5)
        assert state["stall"].preview_state == "failed"
        assert "longer than 3 s" in state["stall"].preview_reason
        assert state["crash"].preview_state == "failed"
        assert "crashed" in state["crash"].preview_reason and "256 MB" in state["crash"].preview_reason
        assert (state["broken"].preview_state, state["broken"].preview_reason) == ("failed", "No preview: not a readable PDF.")
        keys = sorted(o.key for o in services().storage.list("previews/"))
        assert keys == sorted([preview_prefix(state["javascript"]) + "page-1.png"]
                              + [preview_prefix(state["thousands"]) + f"page-{n}.png" for n in range(1, 6)])

    client = app.test_client()
    sign_in(client, "reviewer")
    page = client.get(f"/api/files/{files['thousands']}/preview/5")
    assert page.status_code == 200 and page.mimetype == "image/png" and page.data.startswith(b"\x89PNG")
    assert page.headers["Cache-Control"] == "private, no-store"
    assert page.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert Image.open(io.BytesIO(page.data)).size[1] == 1400  # a letter page at its bounded size
    assert client.get(f"/api/files/{files['thousands']}/preview/6").status_code == 404
    stalled = client.get(f"/api/files/{files['stall']}/preview/1")
    assert stalled.status_code == 404 and "longer than 3 s" in stalled.get_json()["message"]
    detail = client.get(f"/review/{db_submission(app, files['stall'])}").get_data(as_text=True)
    assert "No preview" in detail and "longer than 3 s" in detail


def db_submission(app, file_id: int) -> int:
    with app.app_context():
        return db.session.get(EvidenceFile, file_id).submission_id


def test_an_uploaded_photo_gets_a_large_exif_free_view(app):
    ids = setup_people(app)
    submission_id, (file_id,) = submit(app, ids["owner"], [("camera.jpg", camera_jpeg())])
    run_worker(app)  # scan, thumbnail, preview
    with app.app_context():
        f = db.session.get(EvidenceFile, file_id)
        assert (f.preview_state, f.preview_pages) == ("made", 1)
        assert f.phash is None  # a single-coloured picture has no fingerprint (test_near_duplicates)
    client = app.test_client()
    sign_in(client, "owner")  # the uploader may see their own file's preview
    large = client.get(f"/api/files/{file_id}/preview/1")
    assert large.status_code == 200 and large.mimetype == "image/jpeg"
    assert b"Exif" not in large.data and b"SecretCam" not in large.data and b"shot at home" not in large.data
    assert Image.open(io.BytesIO(large.data)).size == (1200, 1600)  # upright, longer side 1600
    stranger = app.test_client()
    sign_in(stranger, "other")
    assert stranger.get(f"/api/files/{file_id}/preview/1").status_code == 404  # someone else's file


def test_a_file_that_is_not_clean_has_no_preview(app):
    owner = setup_people(app)["owner"]
    file_id = stored(app, owner, "late.pdf", pdf_samples.pages(2), scan_state="pending")
    jobs, _after = enqueue_previews(app, [file_id])
    run_worker(app)
    jobs[0].refresh()
    assert jobs[0].return_value() is None
    client = app.test_client()
    sign_in(client, "reviewer")
    assert client.get(f"/api/files/{file_id}/preview/1").get_json()["code"] == "file_not_ready"


def test_a_csv_becomes_an_escaped_table_with_formula_cells_marked(app):
    owner = setup_people(app)["owner"]
    # Markup is refused at upload; stored directly, the table must still show it as text.
    data = b"name,peers,note\nAda,3,=HYPERLINK(\"http://x\")\nGrace,-5,<script>alert(1)</script>\n@SUM(A1),+7,\tcmd\n"
    file_id = stored(app, owner, "sessions.csv", data)
    enqueue_previews(app, [file_id])
    run_worker(app)
    client = app.test_client()
    sign_in(client, "reviewer")
    html = client.get(f"/review/{db_submission(app, file_id)}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count('class="formula" title=') == 3  # =HYPERLINK, @SUM, tab; not -5 or +7 (numbers)
    assert "Grace" in html and "3 cells a spreadsheet would run as formulas" in html
    assert client.get(f"/api/files/{file_id}/preview/1").get_json()["code"] == "preview_not_found"


def test_csv_table_rules():
    assert is_formula("=1+1") and is_formula("@SUM(A1)") and is_formula("\tx") and is_formula("\rx")
    assert is_formula("-2+3+cmd|' /C calc'!A0") and is_formula("+A1")
    assert not is_formula("-5") and not is_formula("+3.25") and not is_formula("plain") and not is_formula("")
    table = csv_table(CSV, complete=True)
    assert [c["text"] for c in table["rows"][1]] == ["Ada", "3", "20"] and not table["truncated"]
    cut = csv_table(b"a,b\n1,2\n3,4", complete=False)  # the byte limit cut the last line
    assert len(cut["rows"]) == 2 and cut["truncated"]
    many = csv_table(b"".join(b"%d\n" % i for i in range(100)), complete=True)
    assert len(many["rows"]) == 20 and many["truncated"]
    assert json.dumps(csv_table("Zoë,naïve\n".encode(), complete=True))


def test_a_pdf_gets_its_preview_after_the_warm_renderer_process_died(make_app):
    """The worker keeps one warm renderer process (core.evidence.render_server); if something
    kills it (the OOM killer, an operator), the next PDF still gets its preview."""
    import os
    import signal

    from core.evidence import render_server

    app = make_app()
    owner = setup_people(app)["owner"]
    first = stored(app, owner, "first.pdf", pdf_samples.pages(2))
    enqueue_previews(app, [first])
    run_worker(app)
    pid = render_server.SERVER._proc.pid
    os.kill(pid, signal.SIGKILL)
    second = stored(app, owner, "second.pdf", pdf_samples.pages(3))
    enqueue_previews(app, [second])
    run_worker(app)
    with app.app_context():
        for file_id, pages in ((first, 2), (second, 3)):
            row = db.session.get(EvidenceFile, file_id)
            assert (row.preview_state, row.preview_pages) == ("made", pages)
        # The first page is committed (shown) before the others are rendered: the audit trail has both steps.
        from core.platform.models import AuditEvent

        steps = db.session.scalars(select(AuditEvent).where(AuditEvent.subject_id == str(second))
                                   .order_by(AuditEvent.id)).all()
        assert [(e.action, e.details.get("pages")) for e in steps if e.action.startswith("file.preview")] == [
            ("file.preview_made", 1), ("file.preview_pages_added", 3)]
    assert render_server.SERVER._proc.pid != pid


def test_a_pdf_left_with_page_one_alone_gets_its_other_pages_from_the_sweeper(make_app):
    """A PDF preview is made in two stages (page 1 committed, then the rest). A worker that dies
    between them left page 1 alone and nothing knew more were owed; the document's page count is
    stored with page 1, so the preview sweeper queues the job again and it adds only the rest."""
    from datetime import timedelta

    from core.evidence.preview_sweep import sweep_missing
    from core.evidence.previews import page_key
    from core.platform.db import utcnow
    from core.platform.models import AuditEvent

    app = make_app()
    owner = setup_people(app)["owner"]
    long_pdf, short_pdf = stored(app, owner, "long.pdf", pdf_samples.pages(3)), stored(app, owner, "one.pdf", pdf_samples.pages(1))
    enqueue_previews(app, [long_pdf, short_pdf])
    run_worker(app)
    with app.app_context():
        storage = services().storage
        row = db.session.get(EvidenceFile, long_pdf)
        assert (row.preview_state, row.preview_pages, row.preview_page_count) == ("made", 3, 3)
        # What the death between the stages leaves: page 1 stored and committed, pages 2-3 not.
        storage.delete_many([page_key(row, 2), page_key(row, 3)])
        row.preview_pages = 1
        for file_id in (long_pdf, short_pdf):  # past the sweeper's grace period
            db.session.get(EvidenceFile, file_id).created_at = utcnow() - timedelta(minutes=30)
        db.session.commit()
        assert sweep_missing() == 1  # the 1-page PDF owes nothing
    run_worker(app)
    with app.app_context():
        row = db.session.get(EvidenceFile, long_pdf)
        assert (row.preview_state, row.preview_pages) == ("made", 3)
        assert all(services().storage.exists(page_key(row, page)) for page in (1, 2, 3))
        steps = db.session.scalars(select(AuditEvent.action).where(AuditEvent.subject_id == str(long_pdf))
                                   .order_by(AuditEvent.id)).all()
        assert [a for a in steps if a.startswith("file.preview")] == [
            "file.preview_made", "file.preview_pages_added", "file.preview_pages_added"]
        assert sweep_missing() == 0  # nothing owed any more


def test_media_horses_use_the_workers_warm_renderer_and_leave_no_zombie(make_app):
    """Each preview job runs in a work horse forked from the media worker. A horse cannot see the
    worker's renderer with Popen.poll() (not its child), so it used to start one of its own per
    PDF, which outlived the horse unreaped: a zombie per PDF when the worker is a container's PID 1.
    Here the test process stands in for PID 1 (PR_SET_CHILD_SUBREAPER): after three PDFs exactly
    one renderer is its child, alive."""
    import ctypes
    import os
    import time

    from core.evidence import render_server

    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER: orphans come to us, as to PID 1
    serving: list[str] = []
    try:
        app = make_app()
        owner = setup_people(app)["owner"]
        files = [stored(app, owner, f"p{i}.pdf", pdf_samples.pages(2)) for i in range(3)]
        render_server.SERVER.stop()
        enqueue_previews(app, files)
        run_worker(app)
        time.sleep(0.5)  # a renderer a horse started would have exited with the horse's pipe by now
        serving = [(pid, state) for pid, state, args, _ in children() if b"--serve" in args or state == "Z"]
        with app.app_context():
            assert [(db.session.get(EvidenceFile, i).preview_state, db.session.get(EvidenceFile, i).preview_pages)
                    for i in files] == [("made", 2)] * 3
        assert serving == [(render_server.SERVER._proc.pid, "S")]
    finally:
        libc.prctl(36, 0, 0, 0, 0)
        for pid, _ in serving:  # reap what a horse left us (only those: other children are fixtures')
            if pid != getattr(render_server.SERVER._proc, "pid", None):
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


def test_a_renderer_child_killed_while_it_waited_does_not_fail_the_next_pdf(make_app):
    """The warm renderer forks the child for the next PDF ahead of it (its heap faulted in while
    idle). One killed while it waited (by hand, by the OOM killer) must not cost an innocent PDF
    its preview: the renderer forks a fresh one."""
    import signal
    import time

    from core.evidence import render_server

    app = make_app()
    owner = setup_people(app)["owner"]
    file_id = stored(app, owner, "report.pdf", pdf_samples.pages(2))
    render_server.SERVER.stop()
    render_server.SERVER.start()
    server = next(c for c in children() if c[0] == render_server.SERVER._proc.pid)
    deadline = time.monotonic() + 10
    while not (spares := children(server[3])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(spares) == 1, "the renderer keeps one child waiting"
    os.kill(spares[0][0], signal.SIGKILL)
    time.sleep(0.2)
    enqueue_previews(app, [file_id])
    run_worker(app)
    with app.app_context():
        row = db.session.get(EvidenceFile, file_id)
        assert (row.preview_state, row.preview_pages) == ("made", 2)
    assert render_server.SERVER._proc.pid == server[0]  # the same renderer, not a restarted one
