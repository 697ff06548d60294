"""Breakit: two drains (two workers) bind a contact to the same user at once. The contact id is
bound "on the first e-mail match" and never changed after (kajabi.match_user binds only a user
without one). The batch's bind is `UPDATE users SET kajabi_contact_id = ...` with no
`kajabi_contact_id IS NULL` guard, and its users were read before the other drain committed:
the second drain overwrites the first's binding. (The per-event path, kajabi.process ->
match_user, loses the same race: its ORM update is unconditional too; checked by hand, not here.)"""
from __future__ import annotations

import threading
import time

from sqlalchemy import select

from core.platform.db import db
from core.platform.models import User
from core.points import kajabi_batch
from tests.test_kajabi import documented, kapp, post  # noqa: F401


def test_a_second_concurrent_drain_does_not_rebind_the_contact(kapp):
    client = kapp.test_client()
    assert post(client, documented("e1", contact="c-1", tag="elevate-ai-1-completed")).status_code == 202
    assert post(client, documented("e2", contact="c-2", tag="elevate-ai-2-completed")).status_code == 202
    first_ready, go = threading.Event(), threading.Event()
    errors = []

    def drain_a():
        try:
            with kapp.app_context():
                claimed = kajabi_batch.claim(1)
                assert [r.event_id for r in claimed] == ["e1"]
                kajabi_batch.process_batch(claimed)
                first_ready.set()
                go.wait(10)
                db.session.commit()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
            first_ready.set()

    def drain_b():
        try:
            with kapp.app_context():
                claimed = kajabi_batch.claim(1)  # e1 is locked: SKIP LOCKED gives e2
                assert [r.event_id for r in claimed] == ["e2"]
                kajabi_batch.process_batch(claimed)
                db.session.commit()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    a = threading.Thread(target=drain_a)
    a.start()
    assert first_ready.wait(10)
    b = threading.Thread(target=drain_b)
    b.start()
    time.sleep(1.0)  # b has read the user (no contact yet) and waits on a's row lock
    go.set()
    a.join(15)
    b.join(15)
    assert not errors, errors
    with kapp.app_context():
        contact = db.session.scalar(select(User.kajabi_contact_id).where(User.email == "known@example.com"))
    assert contact == "c-1", f"the first binding (c-1) was overwritten with {contact!r}"
