"""The new-submission form, built once per catalogue per process.

Building it on every request cost the upload about 0.6 ms of the web process's CPU (a form
class made with type(), WTForms binding its fields the first time a class is used, the
choices). The catalogue changes rarely, on the admin pages, in any process. So each request
still reads the evidence activities (the one small SELECT it made before), and the built form
is cached under exactly what was read: an admin's edit, made in any process or straight in SQL,
shows on the next form, and there is nothing to invalidate.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from core.platform.db import db
from core.platform.models import Activity
from portal.forms import SubmissionForm, choices, submission_form_class

# Evidence activities, as the form shows them (Kajabi-only activities are not uploaded). Loaded as
# ORM rows, not bare columns: they stay in the session, so the domain's check of the chosen
# activity (submission_fields._check_activity, a get by primary key) costs no second SELECT.
_ACTIVITIES = (select(Activity).where(Activity.active.is_(True), Activity.source == "evidence")
               .order_by(Activity.name))


@dataclass(frozen=True)
class FormActivity:
    """What the form and its page read of an activity. `counters` as stored (a list of
    {"name", "label", "min", "max", ...}); shared between requests, so never modified."""
    code: str
    name: str
    description: str
    counters: list


@dataclass(frozen=True)
class BuiltForm:
    activities: tuple[FormActivity, ...]  # by name
    form_class: type[SubmissionForm]
    activity_choices: tuple[SelectChoice, ...]  # "Choose an activity" first


def evidence_form() -> tuple[BuiltForm, list[Activity]]:
    """The form for the catalogue as it is now, and the activities as loaded (one SELECT in the
    caller's session). The session holds its rows weakly: keep the list while the request works,
    or the domain's get of the chosen activity goes back to the database for it."""
    rows = list(db.session.scalars(_ACTIVITIES))
    key = tuple((a.code, a.name, a.description or "", json.dumps(a.counters or [], sort_keys=True)) for a in rows)
    return _built(key), rows


@lru_cache(maxsize=16)  # one entry per catalogue seen; an old one ages out
def _built(key: tuple[tuple[str, str, str, str], ...]) -> BuiltForm:
    activities = tuple(FormActivity(code, name, description, json.loads(counters))
                       for code, name, description, counters in key)
    return BuiltForm(activities, submission_form_class(activities),
                     tuple(choices([("", "Choose an activity")] + [(a.code, f"{a.name} ({a.code})") for a in activities])))
