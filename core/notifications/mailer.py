"""One e-mail out: over SMTP when SMTP_URL is set, otherwise written to the log (development).

SMTP_URL forms: smtp://[user:password@]host[:25], smtp+starttls://host[:587] (STARTTLS before
AUTH), smtps://host[:465] (TLS from the start). Raises MailError on any refusal or network
failure, so the job that sends fails and RQ retries it.
"""
from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlparse

from core.platform.settings import Settings

log = logging.getLogger(__name__)
SMTP_TIMEOUT_S = 30


class MailError(RuntimeError):
    """The message was not accepted; str() is one line."""


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str
    key: str  # the notification's idempotency key, also sent as a header for tracing


def build(mail: Mail, sender: str) -> EmailMessage:
    """A multipart/alternative message: the plain-text part first, the HTML part second."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=(sender.rsplit("@", 1)[-1].strip(">") or "localhost"))
    message["X-Points-Notification"] = mail.key
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


def send(settings: Settings, mail: Mail) -> str:
    """Send one message. Returns "smtp" or "log" (where it went). Raises MailError."""
    message = build(mail, settings.mail_from)
    if not settings.smtp_url:
        log.info("e-mail (SMTP_URL unset, so written here)",
                 extra={"to": mail.to, "subject": mail.subject, "key": mail.key, "text": mail.text})
        return "log"
    url = urlparse(settings.smtp_url)
    try:
        if url.scheme == "smtps":
            client = smtplib.SMTP_SSL(url.hostname, url.port or 465, timeout=SMTP_TIMEOUT_S,
                                      context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(url.hostname, url.port or (587 if url.scheme == "smtp+starttls" else 25),
                                  timeout=SMTP_TIMEOUT_S)
        with client:
            if url.scheme == "smtp+starttls":
                client.starttls(context=ssl.create_default_context())
            if url.username:
                client.login(unquote(url.username), unquote(url.password or ""))
            refused = client.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"SMTP {url.hostname}:{url.port}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if refused:
        raise MailError(f"SMTP refused {', '.join(refused)}")
    return "smtp"
