"""E-mail notifications against a real SMTP server (aiosmtpd, started by the test): each message
arrives once, to the right person, with its subject, absolute links and both parts, also when
its job runs twice, after a crash between claim and send, and after the SMTP server was down."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core.notifications import digest
from core.platform.db import db, utcnow
from core.platform.models import Notification, OutboxRecord, User
from jobs import context
from jobs import notifications as mail_jobs
from tests.services.smtp import smtp_server  # noqa: F401  (fixture)
from tests.test_portal_support import in_review, people, run_worker, sign_in, submit

BASE = "https://points.example.org"
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.fixture
def mail_app(make_app, smtp_server):  # noqa: F811
    app = make_app(SMTP_URL=smtp_server["url"], PUBLIC_BASE_URL=BASE, MAIL_FROM="Points <points@example.org>")
    context.bind(app)
    return app


def _parts(message) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


def _decide(app, submission_id: int, action: str, reason: str = "") -> None:
    client = app.test_client()
    sign_in(client, "reviewer")
    response = client.post(f"/review/{submission_id}/decide", data={action: "1", "reason": reason})
    assert response.status_code == 302


def _rows(app) -> list[Notification]:
    with app.app_context():
        rows = db.session.scalars(select(Notification).order_by(Notification.id)).all()
        db.session.expunge_all()
        return rows


def test_approval_mail_arrives_once_with_points_links_and_both_parts(mail_app, smtp_server):  # noqa: F811
    ids = people(mail_app)
    submission_id, _ = in_review(mail_app, ids["owner"])
    _decide(mail_app, submission_id, "approve")
    run_worker(mail_app)

    inbox = smtp_server["inbox"]
    [message] = inbox.to("owner@example.com")
    assert message["Subject"] == f"Approved: submission #{submission_id} (Explore)"
    assert message["From"] == "Points <points@example.org>"
    text, html = _parts(message)
    assert "50 points" in text and "<strong>50 points</strong>" in html
    assert "New badges: In-class innovator." in text and "In-class innovator" in html
    link = f"{BASE}/submissions/{submission_id}"
    assert link in text and f'href="{link}"' in html
    assert f"{BASE}/account" in text  # the opt-out link, absolute too

    # The job runs again (a retry, a second worker, the sweeper): nothing more is sent.
    [row] = _rows(mail_app)
    assert row.state == "sent" and row.idempotency_key == f"submission:{submission_id}:approved"
    assert mail_jobs.deliver(row.id) == "done"
    with mail_app.app_context():
        mail_app.extensions["points"].queues.enqueue("outbox", "jobs.notifications.deliver", row.id)
    run_worker(mail_app)
    assert len(inbox.to("owner@example.com")) == 1
    assert [rcpts for rcpts, _ in inbox.messages] == [["owner@example.com"]]


def test_rejection_and_changes_requested_carry_the_reason_and_a_link(mail_app, smtp_server):  # noqa: F811
    ids = people(mail_app)
    first, _ = in_review(mail_app, ids["owner"])
    second, _ = in_review(mail_app, ids["other"])
    _decide(mail_app, first, "reject", "The photo shows a different event.")
    _decide(mail_app, second, "changes", "Please add the attendance list.")
    run_worker(mail_app)

    inbox = smtp_server["inbox"]
    [rejected] = inbox.to("owner@example.com")
    assert rejected["Subject"].startswith(f"Not accepted: submission #{first}")
    text, html = _parts(rejected)
    assert "The photo shows a different event." in text and "The photo shows a different event." in html

    [changes] = inbox.to("other@example.com")
    assert changes["Subject"].startswith(f"Changes requested: submission #{second}")
    text, html = _parts(changes)
    assert "Please add the attendance list." in text
    assert f"{BASE}/submissions/{second}" in text and f'href="{BASE}/submissions/{second}"' in html


def test_a_claim_left_by_a_crash_is_sent_once_and_a_failed_send_is_retried(mail_app, smtp_server):  # noqa: F811
    ids = people(mail_app)
    submission_id, _ = in_review(mail_app, ids["owner"])
    smtp_server["stop"]()  # the mail server is down when the decision's job runs
    _decide(mail_app, submission_id, "reject", "Blurred.")
    run_worker(mail_app)  # RQ schedules a retry; the row says why
    [row] = _rows(mail_app)
    assert row.state == "failed" and "SMTP" in row.last_error

    smtp_server["start"]()
    # A worker claimed it and died before sending: a fresh claim is left alone, a stale one is taken over.
    with mail_app.app_context():
        db.session.execute(update(Notification).values(state="sending", claimed_at=utcnow()))
        db.session.commit()
    assert mail_jobs.deliver(row.id) == "done"
    assert smtp_server["inbox"].to("owner@example.com") == []
    with mail_app.app_context():
        db.session.execute(update(Notification).values(claimed_at=utcnow() - timedelta(minutes=11)))
        db.session.commit()
    assert mail_jobs.sweep() == 1  # the sweeper finds it and queues it again
    run_worker(mail_app)
    assert mail_jobs.deliver(row.id) == "done"
    assert len(smtp_server["inbox"].to("owner@example.com")) == 1
    [row] = _rows(mail_app)
    assert row.state == "sent" and row.last_error is None


def test_opted_out_people_get_nothing(mail_app, smtp_server):  # noqa: F811
    ids = people(mail_app)
    submission_id, _ = in_review(mail_app, ids["owner"])
    client = mail_app.test_client()
    sign_in(client, "owner")
    assert client.post("/account", data={}).status_code == 302  # the box unticked
    assert "E-mail notifications are off." in client.get("/account").get_data(as_text=True)
    _decide(mail_app, submission_id, "approve")
    run_worker(mail_app)
    assert smtp_server["inbox"].messages == []
    [row] = _rows(mail_app)
    assert row.state == "skipped"


def test_infected_file_mail_and_the_admin_digest(mail_app, smtp_server):  # noqa: F811
    ids = people(mail_app)
    submission_id, _ = submit(mail_app, ids["owner"], [("attendance.csv", EICAR)])
    run_worker(mail_app)  # the scan finds it; its job queues the mail; the same burst sends it
    inbox = smtp_server["inbox"]
    [infected] = inbox.to("owner@example.com")
    assert infected["Subject"].startswith(f"A file was refused: submission #{submission_id}")
    text, html = _parts(infected)
    assert "attendance.csv" in text and "malware" in html and f"{BASE}/submissions/new" in text

    with mail_app.app_context():
        db.session.add(OutboxRecord(topic="ledger.recorded", idempotency_key="k-dead", payload={}, status="dead"))
        db.session.commit()
        figures = digest.counts()
    assert figures["infected"] == 1 and figures["dead_letters"] == 1
    assert len(mail_jobs.daily_digest()) == 1 and len(mail_jobs.daily_digest()) == 1  # same day, same row
    run_worker(mail_app)
    [message] = inbox.to("admin@example.com")
    assert "digest" in message["Subject"]
    text, html = _parts(message)
    assert "Infected files: 1" in text and "Outbox dead letters: 1" in text
    assert f'href="{BASE}/admin/outbox"' in html
    assert inbox.to("reviewer@example.com") == []


def test_no_digest_when_nothing_needs_an_admin(mail_app, smtp_server):  # noqa: F811
    people(mail_app)
    assert mail_jobs.daily_digest() == []
    with mail_app.app_context():
        assert db.session.scalar(select(User.notify_email).where(User.email == "admin@example.com")) is True


def test_production_refuses_to_start_without_smtp_while_notifications_are_on():
    from core.platform.settings import Settings, SettingsError

    production = {"APP_ENV": "production", "SECRET_KEY": "x" * 40, "PUBLIC_BASE_URL": BASE}
    with pytest.raises(SettingsError, match="^SMTP_URL is required when APP_ENV=production"):
        Settings.from_env(production)
    with pytest.raises(SettingsError, match="PUBLIC_BASE_URL is required"):
        Settings.from_env({"APP_ENV": "production", "SECRET_KEY": "x" * 40, "SMTP_URL": "smtp://mail:25"})
    assert Settings.from_env({**production, "NOTIFICATIONS_ENABLED": "false"}).smtp_url == ""
    assert Settings.from_env({**production, "SMTP_URL": "smtp+starttls://u:p@mail.example.org:587"}).smtp_url
    with pytest.raises(SettingsError, match="SMTP_URL must start with"):
        Settings.from_env({"SMTP_URL": "http://mail"})
    with pytest.raises(SettingsError, match="PUBLIC_BASE_URL"):
        Settings.from_env({"PUBLIC_BASE_URL": "points.example.org"})


def test_without_smtp_in_development_the_mail_is_written_to_the_log(make_app, caplog):
    app = make_app(LOG_LEVEL="INFO")
    context.bind(app)
    ids = people(app)
    submission_id, _ = in_review(app, ids["owner"])
    _decide(app, submission_id, "changes", "Add the date.")
    with caplog.at_level("INFO", logger="core.notifications.mailer"):
        run_worker(app)
    [record] = [r for r in caplog.records if r.name == "core.notifications.mailer"]
    assert record.to == "owner@example.com" and "Add the date." in record.text
    assert f"http://127.0.0.1:5000/submissions/{submission_id}" in record.text
    [row] = _rows(app)
    assert row.state == "sent"


def test_an_unscannable_file_tells_the_uploader_what_to_do(mail_app, smtp_server):  # noqa: F811
    from core.notifications import messages
    from core.platform.models import EvidenceFile

    ids = people(mail_app)
    submission_id, [file_id] = submit(mail_app, ids["owner"], [("scan-of-a-scan.pdf", b"%PDF-1.4\n%%EOF\n")])
    with mail_app.app_context():
        # The `unscannable` state (the scanner stopped at its own limits) is handled by name.
        f = db.session.get(EvidenceFile, file_id)
        f.scan_state, f.scan_signature = "unscannable", "Heuristics.Limits.Exceeded.MaxScanSize"
        db.session.commit()
        first = messages.for_file(file_id)
        assert messages.for_file(file_id) == first  # the same event twice: one row
    run_worker(mail_app)
    [message] = smtp_server["inbox"].to("owner@example.com")
    assert message["Subject"] == f"A file could not be checked: submission #{submission_id} (Explore)"
    text, html = _parts(message)
    assert "scan-of-a-scan.pdf" in text and "save it again in a simpler form" in text
    assert f'href="{BASE}/submissions/{submission_id}"' in html


def test_a_bulk_decision_tells_each_uploader_once(mail_app, smtp_server):  # noqa: F811
    ids = people(mail_app)
    first, _ = in_review(mail_app, ids["owner"])
    second, _ = in_review(mail_app, ids["other"])
    client = mail_app.test_client()
    sign_in(client, "reviewer")
    response = client.post("/review/bulk", data={"submission_ids": [str(first), str(second)], "reject": "1",
                                                 "reason": "Duplicate of an earlier one.", "confirmed": "yes"})
    assert response.status_code == 302
    run_worker(mail_app)
    inbox = smtp_server["inbox"]
    for address, submission_id in (("owner@example.com", first), ("other@example.com", second)):
        [message] = inbox.to(address)
        assert message["Subject"].startswith(f"Not accepted: submission #{submission_id}")
        assert "Duplicate of an earlier one." in _parts(message)[0]
    assert len(inbox.messages) == 2
