"""Breakit: the Kajabi drain must leave no event stuck `received`."""
from __future__ import annotations

from core.platform.db import db
from core.platform.models import ActivityTag
from tests.test_kajabi import documented, kapp, post  # noqa: F401

def test_a_tag_mapped_to_a_rolling_activity_does_not_leave_events_stuck(kapp):
    """An admin may map a Kajabi tag to AMPLIFY (cap period rolling_7d) on /admin/tags. A hook with
    that tag then raises session_date_required in both drain paths: the event stays `received`
    for ever (retried by every sweep and reconcile, and it sends its whole batch to the slow
    per-event fallback). Either the mapping is refused, or the event ends in a final state."""
    from sqlalchemy import select
    from core.platform.models import KajabiEvent
    from tests.test_kajabi import burst
    from tests.test_portal_support import people, sign_in

    people(kapp)
    admin = kapp.test_client()
    sign_in(admin, "admin")
    r = admin.post("/admin/tags", data={"tag": "amplify-course", "activity_code": "AMPLIFY"})
    with kapp.app_context():
        mapped = db.session.get(ActivityTag, "amplify-course") is not None
    if not mapped:
        return  # refused at the door: fine
    client = kapp.test_client()
    assert post(client, documented("amp-1", tag="amplify-course")).status_code == 202
    assert post(client, documented("ok-1", tag="elevate-ai-1-completed")).status_code == 202
    try:
        burst(kapp)
    except Exception:
        pass
    with kapp.app_context():
        states = dict(db.session.execute(select(KajabiEvent.event_id, KajabiEvent.state)).all())
    assert states["ok-1"] == "ledgered"
    assert states["amp-1"] != "received", "the event is stuck `received` for ever"


def test_a_kajabi_activity_switched_to_rolling_7d_does_not_leave_events_stuck(kapp):
    """The same through /admin/activities: an admin sets LEARN's cap period to rolling_7d (the
    form offers it for every activity). Every LEARN tag hook then stays `received` for ever."""
    from sqlalchemy import select
    from core.platform.models import Activity, KajabiEvent
    from tests.test_kajabi import burst
    from tests.test_portal_support import people, sign_in

    people(kapp)
    admin = kapp.test_client()
    sign_in(admin, "admin")
    admin.post("/admin/activities/LEARN", data={"name": "Learn", "points": "10", "cap_points": "20",
                                                "cap_period": "rolling_7d", "active": "y"})
    with kapp.app_context():
        if db.session.get(Activity, "LEARN").cap_period != "rolling_7d":
            return  # refused at the door: fine
    assert post(kapp.test_client(), documented("learn-1", tag="elevate-ai-1-completed")).status_code == 202
    try:
        burst(kapp)
    except Exception:
        pass
    with kapp.app_context():
        state = db.session.scalar(select(KajabiEvent.state).where(KajabiEvent.event_id == "learn-1"))
    assert state != "received", "the event is stuck `received` for ever"
