"""Notification jobs: deliver one e-mail (by notification id), queue the admins' daily digest,
and sweep for deliveries whose job was lost. Templates render here (a door); the facts, the
claim and SMTP are core.notifications'."""
from __future__ import annotations

from jobs.context import job_context

SUBJECTS = {
    "approved": "Approved: submission #{submission_id} ({activity})",
    "rejected": "Not accepted: submission #{submission_id} ({activity})",
    "changes_requested": "Changes requested: submission #{submission_id} ({activity})",
    "infected": "A file was refused: submission #{submission_id} ({activity})",
    "unscannable": "A file could not be checked: submission #{submission_id} ({activity})",
    "digest": "Points admin digest for {day}: items need you",
}


def render(kind: str, payload: dict, user, base_url: str):
    """(subject, text, html) from portal/templates/portal/mail/<kind>.txt and .html; every
    link is absolute (PUBLIC_BASE_URL)."""
    from flask import render_template

    context = {"p": payload, "user": user, "base": base_url,
               "submission_url": f"{base_url}/submissions/{payload['submission_id']}" if "submission_id" in payload else None,
               "settings_url": f"{base_url}/account"}
    subject = " ".join(SUBJECTS[kind].format(**payload).split())  # one line: no header injection via names
    return (subject,
            render_template(f"portal/mail/{kind}.txt", **context),
            render_template(f"portal/mail/{kind}.html", **context))


def deliver(notification_id: int) -> str:
    """Send one notification at most once (see core.notifications.messages). Returns sent |
    skipped | done (nothing to do); raises MailError (the row is `failed`) so RQ retries."""
    from core.notifications import mailer, messages
    from core.platform.services import services

    with job_context():
        settings = services().settings
        row = messages.claim(int(notification_id))
        if row is None:
            return "done"
        user = messages.recipient(row)
        if user is None or not settings.notifications_enabled:
            messages.finish(row.id, "skipped", "opted out or inactive" if user is None else "NOTIFICATIONS_ENABLED is off")
            return "skipped"
        try:
            subject, text, html = render(row.kind, row.payload, user, settings.public_base_url)
            mailer.send(settings, mailer.Mail(to=user.email, subject=subject, text=text, html=html,
                                              key=row.idempotency_key))
        except Exception as exc:  # noqa: BLE001 - recorded on the row, then raised for RQ's retry
            messages.finish(row.id, "failed", f"{type(exc).__name__}: {exc}"[:500])
            raise
        messages.finish(row.id, "sent")
        return "sent"


def daily_digest() -> list[int]:
    """Queue today's digest for each admin (none when nothing needs them); idempotent per day."""
    from core.notifications.digest import queue_digests

    with job_context():
        return queue_digests()


def sweep() -> int:
    """Queue delivery again for notifications whose job was lost or failed; returns how many."""
    from core.notifications import messages
    from core.platform.services import services

    with job_context():
        ids = messages.due_again()
        for notification_id in ids:
            services().queues.enqueue(messages.QUEUE, messages.DELIVER, notification_id,
                                      job_id=messages.job_id(notification_id), timeout=120)
        return len(ids)
