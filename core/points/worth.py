"""What a decision is worth, before and after it: a preview of an approval (points, caps, badges)
computed by the ledger's own rules (core.points.rules on the facts core.points.ledger loads), and
the points each submission earned, with the reason when it earned none. Reads only: nothing here
writes, locks or appends to the outbox."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select

from core.platform.db import db
from core.platform.models import Activity, Badge, LedgerEntry, Submission
from core.points import ledger, rules

PERIOD_WORDS = {"total": "in total", "rolling_7d": "in any 7 days of sessions", "none": "per submission"}


@dataclass
class Worth:
    points: int  # what approving now would add
    code: str  # awarded | cap_reached (as the ledger would record it)
    caps: list[str] = field(default_factory=list)  # e.g. "LEARN cap: 10 of 20 left in total"
    badges: list[str] = field(default_factory=list)  # badge names that approving would earn
    zero_reason: str | None = None  # why points is 0, in words

    def summary(self) -> str:
        """One line: "+20 points; PRESENT pays once; badge Community voice would be earned"."""
        parts = [f"{self.points:+d} points" + (f" ({self.zero_reason})" if self.zero_reason else "")]
        parts += self.caps
        parts += [f"badge {name} would be earned" for name in self.badges]
        return "; ".join(parts)


def _spec_and_facts(submission: Submission) -> tuple[rules.ActivitySpec, list[rules.PriorFact], rules.NewEvent]:
    spec = ledger.activity_spec(submission.activity_code)
    prior = ledger.prior_facts(submission.user_id, submission.activity_code)
    event = rules.NewEvent({k: int(v or 0) for k, v in (submission.counters or {}).items()}, submission.session_date)
    return spec, prior, event


def approval_worth(submission: Submission) -> Worth:
    """What approving `submission` now would add to its uploader's ledger: rules.compute_award on
    the uploader's prior facts (as ledger.record computes it), the room left under each cap, and
    the badges rules.newly_earned_badges would award. Raises NotFound for an unknown activity."""
    spec, prior, event = _spec_and_facts(submission)
    award = rules.compute_award(spec, prior, event)
    worth = Worth(award.delta_points, award.code, _cap_words(spec, prior, event))
    if award.delta_points == 0:
        worth.zero_reason = zero_reason(spec.code, spec.cap_period, award.code, asked=award.requested_points)
    facts = ledger.user_facts(submission.user_id)
    after = rules.UserFacts(facts.tags_held, facts.approved_activities | {submission.activity_code}, facts.badges_held)
    candidates = [r for r in ledger.badge_rules() if r.type == "first_approved"]
    codes = rules.newly_earned_badges(candidates, after)
    worth.badges = badge_names(codes)
    return worth


def _cap_words(spec: rules.ActivitySpec, prior: list[rules.PriorFact], event: rules.NewEvent) -> list[str]:
    room = rules.room_left(spec, prior, event)
    words = []
    if spec.cap_period == "once":
        if room["points"]:  # once it has paid, the zero reason says so
            words.append(f"{spec.code} pays once")
    elif room["points"] is not None:
        words.append(f"{spec.code} cap: {room['points']} of {spec.cap_points} points left {PERIOD_WORDS[spec.cap_period]}")
    for counter in spec.counters:
        if room.get(counter.name) is not None:
            words.append(f"{counter.name}: {room[counter.name]} of {counter.cap} left {PERIOD_WORDS.get(spec.cap_period, '')}".rstrip())
    return words


def zero_reason(activity_code: str, cap_period: str, code: str, *, asked: int = 0) -> str:
    """Why an approval earned (or would earn) 0 points, in words an uploader understands."""
    name = activity_code.capitalize()
    if code == "revoked":
        return "approval withdrawn"
    if code == rules.CAP_REACHED:
        if cap_period == "once":
            return f"{name} pays once"
        return f"{name} cap reached" + (" for this week" if cap_period == "rolling_7d" else "")
    return "nothing to count" if not asked else "no points"


def badge_names(codes: Iterable[str]) -> list[str]:
    codes = list(codes)
    if not codes:
        return []
    names = dict(db.session.execute(select(Badge.code, Badge.name).where(Badge.code.in_(codes))).all())
    return [names.get(c, c) for c in codes]
