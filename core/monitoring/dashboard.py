"""What the admin operations dashboard shows (portal/operations.py draws it): KPI tiles, points per
day by activity, the tag -> ledger latency distribution, the 24-hour backlog series, and the
files an admin must look at (infected, unscannable, quarantined).

Every figure is one indexed query; nothing here is cached, the page is for people.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from core.monitoring import ops_metrics, ops_samples, slo
from core.platform.db import db, utcnow
from core.platform.models import DailyRollup, EvidenceFile, KajabiEvent, Submission, User

POINTS_DAYS = 30
LATENCY_SPAN = timedelta(days=7)
LATENCY_LIMIT = 20_000  # the most recent events of the span; enough for a distribution
# Bucket edges in seconds; the 60 s objective is an edge, so bars sit wholly on one side of it.
LATENCY_EDGES = (0, 5, 15, 30, 60, 120, 300, 900)
ATTENTION_LIMIT = 20


def kpis(now: datetime | None = None) -> dict:
    """{in_review, oldest_waiting_s, decided_today, unmatched, outbox_pending, outbox_dead,
    scans_pending, infected, unscannable, integrity_mismatch}; ages in seconds (None if none)."""
    now = now or utcnow()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    in_review, oldest = db.session.execute(
        select(func.count(), func.min(Submission.created_at)).where(Submission.status == "in_review")).one()
    # By a reviewer: the scanner also sets decided_at when it turns an infected submission back.
    decided = db.session.scalar(select(func.count()).select_from(Submission)
                                .where(Submission.decided_at >= day, Submission.decided_by_id.is_not(None))) or 0
    unmatched = db.session.scalar(select(func.count()).select_from(KajabiEvent)
                                  .where(KajabiEvent.state == "queued_unmatched")) or 0
    box, scans, files = slo.outbox(now), slo.scans(now), ops_metrics.file_outcomes()
    return {"in_review": in_review or 0, "oldest_waiting_s": slo._age_seconds(oldest, now), "decided_today": decided,
            "unmatched": unmatched, "outbox_pending": box["pending"], "outbox_dead": box["dead"],
            "outbox_lag_s": box["oldest_age_s"], "scans_pending": scans["pending"], **files}


def points_per_day(today: date | None = None, days: int = POINTS_DAYS) -> tuple[list[date], dict[str, list[int]]]:
    """([day, ...] oldest first, {activity: [points per day]}) from daily_rollups."""
    today = today or utcnow().date()
    axis = [today - timedelta(days=days - 1 - i) for i in range(days)]
    index = {d: i for i, d in enumerate(axis)}
    series: dict[str, list[int]] = {}
    for day, code, points in db.session.execute(
            select(DailyRollup.day, DailyRollup.activity_code, DailyRollup.points)
            .where(DailyRollup.day >= axis[0], DailyRollup.day <= today)):
        series.setdefault(code, [0] * days)[index[day]] += int(points or 0)
    return axis, dict(sorted(series.items()))


def latency_histogram(now: datetime | None = None) -> dict:
    """Tag -> ledger latencies of the last LATENCY_SPAN, bucketed by LATENCY_EDGES:
    {"buckets": [(start_s, end_s | None, count)], "events", "within", "target_s"}. Events still
    waiting past the target count in the bucket of their age so far."""
    now = now or utcnow()
    since = now - LATENCY_SPAN
    rows = db.session.execute(
        # From when the event could be matched, as the SLO counts (core.monitoring.slo.MATCHABLE).
        select(slo.MATCHABLE, KajabiEvent.ledgered_at)
        .where(KajabiEvent.received_at >= since,
               KajabiEvent.ledgered_at.is_not(None) | (KajabiEvent.state == "received"))
        .order_by(KajabiEvent.received_at.desc()).limit(LATENCY_LIMIT)).all()
    counts = [0] * len(LATENCY_EDGES)
    within = events = 0
    for received, ledgered in rows:
        seconds = ((ledgered or now) - received).total_seconds()
        if ledgered is None and seconds <= slo.TARGET_SECONDS:
            continue  # still in time: not judged yet
        events += 1
        within += seconds <= slo.TARGET_SECONDS
        slot = max(i for i, edge in enumerate(LATENCY_EDGES) if seconds >= edge or i == 0)
        counts[slot] += 1
    ends = list(LATENCY_EDGES[1:]) + [None]
    return {"buckets": [(LATENCY_EDGES[i], ends[i], counts[i]) for i in range(len(counts))],
            "events": events, "within": within, "target_s": slo.TARGET_SECONDS}


def backlog_series(now: datetime | None = None) -> list[dict]:
    """The last 24 h of per-minute samples: [{taken_at, queue_depths, scans_pending,
    outbox_pending, outbox_lag_s, in_review, unmatched}], oldest first."""
    return [{"taken_at": s.taken_at, "queue_depths": dict(s.queue_depths or {}), "scans_pending": s.scans_pending,
             "outbox_pending": s.outbox_pending, "outbox_lag_s": s.outbox_lag_s, "in_review": s.in_review,
             "unmatched": s.unmatched} for s in ops_samples.recent(now)]


def attention_files(limit: int = ATTENTION_LIMIT) -> list[dict]:
    """Infected, unscannable and quarantined files, newest first: what an admin must know about."""
    problem = (EvidenceFile.scan_state.in_(("infected", "unscannable"))) | EvidenceFile.quarantined_at.is_not(None)
    rows = db.session.execute(
        select(EvidenceFile, User.email).join(User, User.id == EvidenceFile.user_id)
        .where(problem).order_by(func.coalesce(EvidenceFile.quarantined_at, EvidenceFile.scanned_at,
                                               EvidenceFile.created_at).desc(), EvidenceFile.id.desc())
        .limit(limit)).all()
    out = []
    for file, email in rows:
        if file.quarantined_at is not None:
            problem_word, when, detail = f"integrity {file.integrity_state}", file.quarantined_at, f"sha256 {file.sha256[:16]}..."
        else:
            problem_word, when, detail = file.scan_state, file.scanned_at or file.created_at, file.scan_signature or ""
        out.append({"id": file.id, "submission_id": file.submission_id, "name": file.original_name, "uploader": email,
                    "problem": problem_word, "when": when, "detail": detail})
    return out


def attention_counts(now: datetime | None = None, recent: timedelta = timedelta(days=7)) -> dict:
    """What the admin overview flags: {"infected", "unscannable"} scanned within `recent`,
    "integrity_mismatch" (quarantined files not yet deleted; they stay until an operator
    restores them, docs/operations.md) and "dead_letters" (outbox records that gave up)."""
    now = now or utcnow()
    states = dict(db.session.execute(
        select(EvidenceFile.scan_state, func.count())
        .where(EvidenceFile.scan_state.in_(("infected", "unscannable")), EvidenceFile.scanned_at >= now - recent)
        .group_by(EvidenceFile.scan_state)).all())
    quarantined = db.session.scalar(select(func.count()).select_from(EvidenceFile).where(
        EvidenceFile.quarantined_at.is_not(None), EvidenceFile.deleted_at.is_(None))) or 0
    return {"infected": states.get("infected", 0), "unscannable": states.get("unscannable", 0),
            "integrity_mismatch": quarantined, "dead_letters": slo.outbox(now)["dead"]}
