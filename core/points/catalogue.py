"""The demo catalogue from CONTRACT.md, as data. `flask demo seed` writes it; the admin pages
edit it afterwards, so nothing here is read by the rules at run time."""
from __future__ import annotations

from core.platform.db import db
from core.platform.models import Activity, ActivityTag, Badge

ACTIVITIES = [
    dict(code="LEARN", name="Learn", source="kajabi", points=10, cap_points=20, cap_period="total", counters=[],
         description="+10 per Elevate AI course completion tag, 20 in total."),
    dict(code="EXPLORE", name="Explore", source="evidence", points=50, cap_points=50, cap_period="once", counters=[],
         description="+50 on the first approved submission."),
    dict(code="PRESENT", name="Present", source="evidence", points=20, cap_points=20, cap_period="once", counters=[],
         description="+20 on the first approved submission."),
    dict(code="AMPLIFY", name="Amplify", source="evidence", points=0, cap_points=None, cap_period="rolling_7d",
         description="2 per peer trained + 1 per student trained; per rolling 7 days: 50 peers, 200 students.",
         counters=[{"name": "peers", "label": "Peers trained", "points_each": 2, "min": 0, "max": 50, "cap": 50},
                   {"name": "students", "label": "Students trained", "points_each": 1, "min": 0, "max": 200, "cap": 200}]),
]
TAGS = {"elevate-ai-1-completed": "LEARN", "elevate-ai-2-completed": "LEARN"}
BADGES = [
    dict(code="STARTER", name="Starter", description="Both Elevate AI courses completed.",
         rule={"type": "tags_held", "tags": ["elevate-ai-1-completed", "elevate-ai-2-completed"]}),
    dict(code="IN_CLASS_INNOVATOR", name="In-class innovator", description="First approved EXPLORE.",
         rule={"type": "first_approved", "activity": "EXPLORE"}),
    dict(code="COMMUNITY_VOICE", name="Community voice", description="First approved PRESENT.",
         rule={"type": "first_approved", "activity": "PRESENT"}),
]


def seed_catalogue() -> int:
    """Insert what is missing; never overwrite what an admin has edited. Returns rows added."""
    added = 0
    for spec in ACTIVITIES:
        if db.session.get(Activity, spec["code"]) is None:
            db.session.add(Activity(**spec))
            added += 1
    db.session.flush()
    for tag, code in TAGS.items():
        if db.session.get(ActivityTag, tag) is None:
            db.session.add(ActivityTag(tag=tag, activity_code=code))
            added += 1
    for spec in BADGES:
        if db.session.get(Badge, spec["code"]) is None:
            db.session.add(Badge(**spec))
            added += 1
    return added
