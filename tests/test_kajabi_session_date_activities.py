"""A Kajabi tag carries no session date, so it cannot award an activity whose cap counts by session
date (rolling_7d). The admin pages refuse such a mapping both ways round; one made anyway (SQL, an
older release) leaves its events `ignored` with `needs_session_date`, on both drain paths, instead of
`received` for ever (found by the outside pass: the event was retried by every sweep and sent its
whole batch down the per-event path). Also: a binding made by another drain is never overwritten."""
from __future__ import annotations

from sqlalchemy import select, text

from core.platform.db import db
from core.platform.models import Activity, ActivityTag, KajabiEvent, User
from core.points import kajabi
from tests.test_kajabi import burst, documented, kapp, post  # noqa: F401
from tests.test_portal_support import people, sign_in


def states(app) -> dict[str, tuple[str, str | None]]:
    with app.app_context():
        return {e: (s, c) for e, s, c in db.session.execute(
            select(KajabiEvent.event_id, KajabiEvent.state, KajabiEvent.result_code)).all()}


def test_mapping_a_tag_to_a_rolling_activity_is_refused_with_the_reason(kapp):
    people(kapp)
    admin = kapp.test_client()
    sign_in(admin, "admin")
    page = admin.post("/admin/tags", data={"tag": "amplify-course", "activity_code": "AMPLIFY"}, follow_redirects=True)
    assert "a Kajabi tag carries no session date" in page.get_data(as_text=True)
    with kapp.app_context():
        assert db.session.get(ActivityTag, "amplify-course") is None


def test_a_tagged_activity_cannot_become_rolling_and_the_form_keeps_what_was_typed(kapp):
    people(kapp)
    admin = kapp.test_client()
    sign_in(admin, "admin")
    page = admin.post("/admin/activities/LEARN", data={"name": "Learn renamed", "points": "10", "cap_points": "20",
                                                       "cap_period": "rolling_7d", "active": "y"})
    html = page.get_data(as_text=True)
    assert page.status_code == 400
    assert "Remove those tag mappings first" in html and 'value="Learn renamed"' in html
    assert "<option selected>rolling_7d</option>" in html and 'aria-describedby="cap_period-LEARN-error"' in html
    with kapp.app_context():
        learn = db.session.get(Activity, "LEARN")
        assert learn.cap_period != "rolling_7d" and learn.name != "Learn renamed"


def test_a_mapping_made_in_sql_leaves_its_events_ignored_on_the_batch_path(kapp):
    with kapp.app_context():
        db.session.add(ActivityTag(tag="amplify-course", activity_code="AMPLIFY"))
        db.session.commit()
    client = kapp.test_client()
    assert post(client, documented("amp-1", tag="amplify-course")).status_code == 202
    assert post(client, documented("ok-1", tag="elevate-ai-1-completed")).status_code == 202
    burst(kapp)
    found = states(kapp)
    assert found["amp-1"] == ("ignored", "needs_session_date")
    assert found["ok-1"] == ("ledgered", "awarded")


def test_a_mapping_made_in_sql_leaves_its_event_ignored_on_the_per_event_path(kapp):
    with kapp.app_context():
        db.session.execute(text("UPDATE activities SET cap_period = 'rolling_7d' WHERE code = 'LEARN'"))
        db.session.commit()
    assert post(kapp.test_client(), documented("learn-1", tag="elevate-ai-3-completed")).status_code == 202
    with kapp.app_context():
        row = db.session.scalar(select(KajabiEvent.id).where(KajabiEvent.event_id == "learn-1"))
        assert kajabi.process(row) == "ignored"
        db.session.commit()
    assert states(kapp)["learn-1"] == ("ignored", "needs_session_date")


def test_the_per_event_path_never_overwrites_a_binding_committed_after_it_read_the_user(kapp):
    """The drain read the user unbound; another drain then bound contact c-1 and committed. The
    per-event match (an unconditional ORM assignment before) must keep c-1."""
    with kapp.app_context():
        user = db.session.scalar(select(User).where(User.email == "known@example.com"))
        assert user.kajabi_contact_id is None  # read before the other drain commits
        with db.engine.begin() as other:
            other.execute(text("UPDATE users SET kajabi_contact_id = 'c-1' WHERE id = :id"), {"id": user.id})
        matched = kajabi.match_user("c-2", "known@example.com")
        db.session.commit()
        assert matched.id == user.id and matched.kajabi_contact_id == "c-1"
        assert db.session.execute(text("SELECT kajabi_contact_id FROM users WHERE id = :id"),
                                  {"id": user.id}).scalar() == "c-1"
