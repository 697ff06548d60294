"""What the admin pages change: roles, the catalogue and its Kajabi tag mappings, unmatched Kajabi
events, dead outbox records. Each change is audited; callers commit. Changes that can make an
unmatched Kajabi event matchable ask for a reconcile after the commit."""
from __future__ import annotations

from sqlalchemy import select, update

from core.delivery import outbox
from core.platform import audit
from core.points import kajabi, ledger, rules
from core.accounts.users import create_user, normalise_email
from core.platform.db import db, utcnow
from core.platform.errors import Conflict, NotFound, ValidationError
from core.platform.models import ROLES, Activity, ActivityTag, KajabiEvent, OutboxRecord, User

CAP_PERIODS = ("none", "total", "once", "rolling_7d")


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("user_not_found", f"There is no user {user_id}.")
    return user


def add_user(admin_id: int, email: str, role: str, *, name: str = "", city: str | None = None,
             password: str | None = None) -> tuple[User, str]:
    user, password = create_user(email, role, password, name=name, city=city)
    audit.record("user.created", "user", user.id, actor_id=admin_id, role=role)
    kajabi.reconcile_soon()  # a new e-mail can match a waiting Kajabi event
    return user, password


def set_role(admin_id: int, user_id: int, role: str, active: bool) -> User:
    if role not in ROLES:
        raise ValidationError("role_invalid", f"Role must be one of {', '.join(ROLES)}.", [{"field": "role", "issue": role}])
    user = _user(user_id)
    if user.id == admin_id and (role != "admin" or not active):
        # Otherwise the last admin can lock everyone out of these pages.
        raise Conflict("own_role", "You cannot remove your own admin role or deactivate yourself.")
    before = (user.role, user.active)
    user.role, user.active = role, active
    audit.record("user.role_changed", "user", user.id, actor_id=admin_id, before=list(before), after=[role, active])
    kajabi.reconcile_soon()
    return user


def update_activity(admin_id: int, code: str, *, name: str, points: int, cap_points: int | None, cap_period: str,
                    active: bool) -> Activity:
    # Locked, as add_tag locks it: two admins, one switching it to rolling_7d and one mapping a tag
    # to it, would each pass the other's check before either commits.
    activity = db.session.get(Activity, code, with_for_update=True, populate_existing=True)
    if activity is None:
        raise NotFound("activity_not_found", f"There is no activity {code!r}.")
    if cap_period not in CAP_PERIODS:
        raise ValidationError("cap_period_invalid", f"Cap period must be one of {', '.join(CAP_PERIODS)}.",
                              [{"field": "cap_period", "issue": cap_period}])
    tags = db.session.scalars(select(ActivityTag.tag).where(ActivityTag.activity_code == code).limit(3)).all() \
        if cap_period in ledger.SESSION_DATE_PERIODS else []
    if tags:
        why = (f"Kajabi tags ({', '.join(tags)}) award {code}, and a tag carries no session date to count a "
               f"rolling 7-day cap by. Remove those tag mappings first, or choose another cap period.")
        raise ValidationError("cap_period_needs_session_date", why, [{"field": "cap_period", "issue": why}])
    before = {"name": activity.name, "points": activity.points, "cap_points": activity.cap_points,
              "cap_period": activity.cap_period, "active": activity.active}
    activity.name, activity.points, activity.cap_points = name.strip(), int(points), cap_points
    activity.cap_period, activity.active = cap_period, bool(active)
    audit.record("activity.updated", "activity", code, actor_id=admin_id, before=before,
                 after={"name": activity.name, "points": activity.points, "cap_points": cap_points,
                        "cap_period": cap_period, "active": activity.active})
    return activity


def add_tag(admin_id: int, tag: str, activity_code: str) -> ActivityTag:
    name = rules.normalise_tag(tag)
    if not name:
        raise ValidationError("tag_invalid", "Give a tag name.", [{"field": "tag", "issue": "empty"}])
    activity = db.session.get(Activity, activity_code, with_for_update=True, populate_existing=True)  # see update_activity
    if activity is None:
        raise ValidationError("activity_invalid", "Choose an activity.", [{"field": "activity_code", "issue": activity_code}])
    if activity.cap_period in ledger.SESSION_DATE_PERIODS:
        raise ValidationError("activity_needs_session_date",
                              f"{activity_code} caps points per rolling 7 days of session dates, and a Kajabi tag "
                              f"carries no session date. Choose an activity with another cap period.",
                              [{"field": "activity_code", "issue": "counted by session date; a tag has none"}])
    if db.session.get(ActivityTag, name) is not None:
        raise Conflict("tag_exists", f"The tag {name!r} is already mapped.", [{"field": "tag", "issue": "exists"}])
    mapping = ActivityTag(tag=name, activity_code=activity_code)
    db.session.add(mapping)
    audit.record("tag.mapped", "activity_tag", name, actor_id=admin_id, activity_code=activity_code)
    kajabi.reconcile_soon()  # events with this tag were kept as unknown_tag until now
    return mapping


def remove_tag(admin_id: int, tag: str) -> None:
    mapping = db.session.get(ActivityTag, tag)
    if mapping is None:
        raise NotFound("tag_not_found", f"The tag {tag!r} is not mapped.")
    db.session.delete(mapping)
    audit.record("tag.unmapped", "activity_tag", tag, actor_id=admin_id, activity_code=mapping.activity_code)


def attach_event(admin_id: int, event_row_id: int, email: str) -> str | None:
    """Bind an unmatched event's Kajabi contact to a user, then process it now. Returns the
    event's new state."""
    event = db.session.get(KajabiEvent, event_row_id)
    if event is None:
        raise NotFound("kajabi_event_not_found", f"There is no Kajabi event {event_row_id}.")
    if event.state != "queued_unmatched":
        raise Conflict("event_not_unmatched", f"Event {event.event_id} is {event.state}, not waiting for a user.")
    user = db.session.query(User).filter_by(email=normalise_email(email)).first()
    if user is None:
        raise ValidationError("user_not_found", f"No user has the e-mail {normalise_email(email)}.",
                              [{"field": "email", "issue": "unknown"}])
    if not event.contact_id:
        raise Conflict("no_contact_id", "This event carries no Kajabi contact id, so it can only match by e-mail.")
    if user.kajabi_contact_id and user.kajabi_contact_id != event.contact_id:
        raise Conflict("contact_bound", f"{user.email} is already linked to Kajabi contact {user.kajabi_contact_id}.")
    user.kajabi_contact_id = event.contact_id
    audit.record("kajabi.attached", "kajabi_event", event.id, actor_id=admin_id, user_id=user.id,
                 contact_id=event.contact_id)
    db.session.flush()
    state = kajabi.process(event.id)
    kajabi.reconcile_soon()  # other events from the same contact match now too
    return state


def retry_dead(admin_id: int, record_id: int | None = None) -> int:
    """Send dead outbox records (one, or all) round again from their first attempt."""
    query = update(OutboxRecord).where(OutboxRecord.status == "dead")
    if record_id is not None:
        query = query.where(OutboxRecord.id == record_id)
    count = db.session.execute(query.values(status="pending", attempts=0, next_attempt_at=utcnow(), last_error=None)
                               .execution_options(synchronize_session=False)).rowcount
    audit.record("outbox.retried", "outbox", record_id or "dead", actor_id=admin_id, count=count)
    if count:
        outbox.request_kick()
    return count
