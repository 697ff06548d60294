"""A real SMTP server for the notification tests: aiosmtpd on a free loopback port, keeping every
message it receives (parsed), so tests read what a mail server would have been handed."""
from __future__ import annotations

import email
import email.policy
import threading

import pytest

from tests.services.ports import free_port


class Inbox:
    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list:
        with self.lock:
            return [m for rcpts, m in self.messages if address in rcpts]


@pytest.fixture
def smtp_server():
    """{"url": "smtp://127.0.0.1:PORT", "inbox": Inbox, "start": fn, "stop": fn}; stopped after the test."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    running = []

    def start():
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        running.append(controller)

    def stop():
        running.pop().stop()

    start()
    try:
        yield {"url": f"smtp://127.0.0.1:{port}", "inbox": inbox, "start": start, "stop": stop, "port": port}
    finally:
        while running:
            stop()
