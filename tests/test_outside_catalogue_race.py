"""brk2: the admin catalogue's rolling_7d / Kajabi tag refusal, with inputs of the same kind."""
from __future__ import annotations

import threading

from core.admin import actions
from core.platform.db import db
from core.platform.models import Activity, ActivityTag
from tests.test_kajabi import kapp  # noqa: F401
from tests.test_portal_support import people, sign_in


def test_concurrent_tag_mapping_and_switch_to_rolling_cannot_both_win(kapp):
    """Admin A switches EXPLORE to rolling_7d (not yet committed) while admin B maps a tag to EXPLORE.
    Each check reads the other's table before the other commits: both pass, and the catalogue ends up
    with a tag mapped to a rolling_7d activity, the state the fix set out to make impossible."""
    ids = people(kapp)
    switched, go, errors = threading.Event(), threading.Event(), []

    def admin_a():
        try:
            with kapp.app_context():
                actions.update_activity(ids["admin"], "EXPLORE", name="Explore", points=5, cap_points=None,
                                        cap_period="rolling_7d", active=True)
                db.session.flush()
                switched.set()
                go.wait(10)
                db.session.commit()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
            switched.set()

    a = threading.Thread(target=admin_a)
    a.start()
    assert switched.wait(10)
    b_error = None
    with kapp.app_context():
        try:
            actions.add_tag(ids["admin"], "explore-live", "EXPLORE")
            db.session.commit()
        except Exception as exc:  # noqa: BLE001
            b_error = exc
            db.session.rollback()
    go.set()
    a.join(15)
    with kapp.app_context():
        period = db.session.get(Activity, "EXPLORE").cap_period
        tag = db.session.get(ActivityTag, "explore-live")
    assert not (period == "rolling_7d" and tag is not None), \
        f"both admins won: EXPLORE is {period} and tag explore-live maps to it (a errors={errors}, b error={b_error})"

