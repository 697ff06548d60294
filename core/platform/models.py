"""Every table, with the indexes the playbook names. Schema changes go through migrations/ only."""
from __future__ import annotations

import uuid

from flask_login import UserMixin
from sqlalchemy import (JSON, BigInteger, Boolean, Computed, Date, ForeignKey, Index, Integer, SmallInteger, String, Text,
                        UniqueConstraint, text, true)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.platform.db import UTCDateTime, db, utcnow

# BIGINT on PostgreSQL, but INTEGER on SQLite so the primary key stays the rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")

ROLES = ("uploader", "reviewer", "admin")
SUBMISSION_STATES = ("scanning", "in_review", "changes_requested", "approved", "rejected", "revoked")
SCAN_STATES = ("pending", "clean", "infected", "unscannable", "unscanned")


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored as normalise_email gives it (NFC, casefolded)
    name: Mapped[str] = mapped_column(String(200), default="")
    # The name as the database's lower() gives it, kept by the database (migration 0012): the
    # uploader filter and user search test it without lower-casing every name on every page.
    name_lower: Mapped[str | None] = mapped_column(Text, Computed("lower(name)", persisted=True),
                                                      deferred=True)
    role: Mapped[str] = mapped_column(String(16), default="uploader")
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    kajabi_contact_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    city: Mapped[str | None] = mapped_column(String(120))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at = mapped_column(UTCDateTime, default=utcnow)
    updated_at = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # E-mail about their own submissions (and, for admins, the daily digest); off = no mail (0008).
    notify_email: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return bool(self.active)

    def has_role(self, *roles: str) -> bool:
        return self.role in roles

    @property
    def is_reviewer(self) -> bool:
        return self.role in ("reviewer", "admin")


class Activity(db.Model):
    """The catalogue is data. cap_period: none | total | once | rolling_7d.

    counters: [{"name": "peers", "label": "Peers trained", "points_each": 2, "min": 0,
    "max": 50, "cap": 50}, ...]; a counter's cap applies per cap period.
    """
    __tablename__ = "activities"
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16), default="evidence")  # evidence | kajabi
    points: Mapped[int] = mapped_column(Integer, default=0)
    cap_points: Mapped[int | None] = mapped_column(Integer)
    cap_period: Mapped[str] = mapped_column(String(16), default="none")
    counters: Mapped[list] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at = mapped_column(UTCDateTime, default=utcnow)


class ActivityTag(db.Model):
    """Kajabi tag (trimmed, lower-cased) -> activity."""
    __tablename__ = "activity_tags"
    tag: Mapped[str] = mapped_column(String(200), primary_key=True)
    activity_code: Mapped[str] = mapped_column(ForeignKey("activities.code"))
    created_at = mapped_column(UTCDateTime, default=utcnow)


class Badge(db.Model):
    """rule: {"type": "tags_held", "tags": [...]} or {"type": "first_approved", "activity": "X"}."""
    __tablename__ = "badges"
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    rule: Mapped[dict] = mapped_column(JSON, default=dict)


class UserBadge(db.Model):
    __tablename__ = "user_badges"
    __table_args__ = (UniqueConstraint("user_id", "badge_code", name="uq_user_badges_user_badge"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    badge_code: Mapped[str] = mapped_column(ForeignKey("badges.code"))
    ledger_id: Mapped[int | None] = mapped_column(BigId)
    awarded_at = mapped_column(UTCDateTime, default=utcnow)


class Submission(db.Model):
    __tablename__ = "submissions"
    __table_args__ = (
        Index("ix_submissions_user_activity_status_date", "user_id", "activity_code", "status", "session_date"),
        Index("ix_submissions_status_created", "status", "created_at"),
        # The review queue's other sorts and filters (core/review/reviewing.py; bench/queue.py measures them).
        # With id last, the session-date sort's keyset (session_date, id) is read in order, not
        # sorted per date (migration 0009_perf).
        Index("ix_submissions_status_session_date_id", "status", "session_date", "id"),
        Index("ix_submissions_claimed_by", "claimed_by_id"),
        # "Reviewed by me": the trailing columns let the queue's capped counts under any other filter
        # read this index alone instead of visiting ~10,000 heap pages (migration 0002).
        Index("ix_submissions_decided_by_status_created_cover", "decided_by_id", "status", "created_at",
              "activity_code", "session_date", "user_id"),
        # "Reviewed by me" sorted by session date: the reviewer's rows in keyset order, so the page
        # stops after 51 rows instead of filtering a status's whole date range (migration 0010_queue).
        Index("ix_submissions_decided_by_status_session_date_id", "decided_by_id", "status", "session_date", "id"),
        # The queue's capped counts under an uploader filter: only the counted status's rows of each
        # person, not all of them (migration 0011_user_status).
        Index("ix_submissions_user_status", "user_id", "status"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    activity_code: Mapped[str] = mapped_column(ForeignKey("activities.code"))
    status: Mapped[str] = mapped_column(String(24), default="scanning")
    session_date = mapped_column(Date, nullable=False)
    session_start = mapped_column(UTCDateTime)  # optional time, for the AMPLIFY +-45 min hint
    city: Mapped[str | None] = mapped_column(String(120))
    counters: Mapped[dict] = mapped_column(JSON, default=dict)
    note: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str | None] = mapped_column(Text)  # last decision's reason, shown to the uploader
    revision: Mapped[int] = mapped_column(Integer, default=1)
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    claim_expires_at = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at = mapped_column(UTCDateTime)
    created_at = mapped_column(UTCDateTime, default=utcnow)
    updated_at = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    user = relationship("User", foreign_keys=[user_id])
    claimed_by = relationship("User", foreign_keys=[claimed_by_id])
    decided_by = relationship("User", foreign_keys=[decided_by_id])
    activity = relationship("Activity")
    files = relationship("EvidenceFile", back_populates="submission", order_by="EvidenceFile.id")


class EvidenceFile(db.Model):
    __tablename__ = "evidence_files"
    __table_args__ = (Index("ix_evidence_files_scan_state_created", "scan_state", "created_at"),
                      Index("ix_evidence_files_user_created", "user_id", "created_at"),
                      # Reused evidence (migration 0007_previews): exact repeats by SHA-256, and
                      # near-duplicate images by a 16-bit band of the perceptual hash within one
                      # bit flip; each band index carries id and the hash, images only (0010b_phash),
                      # so a look-up reads no table row it does not return (docs/near-duplicates.md).
                      Index("ix_evidence_files_sha256", "sha256"),
                      *(Index(f"ix_evidence_files_{band}_hash", band, "id", "phash",
                              postgresql_where=text("phash IS NOT NULL"), sqlite_where=text("phash IS NOT NULL"))
                        for band in ("phash_b0", "phash_b1", "phash_b2", "phash_b3")))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    activity_code: Mapped[str] = mapped_column(String(32))
    storage_key: Mapped[str] = mapped_column(String(512), unique=True)
    thumbnail_key: Mapped[str | None] = mapped_column(String(512))
    original_name: Mapped[str] = mapped_column(String(255))
    ext: Mapped[str] = mapped_column(String(8))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigId)
    sha256: Mapped[str] = mapped_column(String(64))
    scan_state: Mapped[str] = mapped_column(String(16), default="pending")
    scan_signature: Mapped[str | None] = mapped_column(String(255))
    scan_attempts: Mapped[int] = mapped_column(Integer, default=0)
    scanned_at = mapped_column(UTCDateTime)
    deleted_at = mapped_column(UTCDateTime)
    created_at = mapped_column(UTCDateTime, default=utcnow)
    # Why a file is `unscannable` (core.evidence.scanning.UNSCANNABLE_REASONS), e.g. limits_exceeded.
    scan_reason: Mapped[str | None] = mapped_column(String(64))
    # made | failed (final); None while an image's thumbnail is still to be made.
    thumbnail_state: Mapped[str | None] = mapped_column(String(16))
    thumbnail_error: Mapped[str | None] = mapped_column(String(255))
    # Reviewer previews (core.evidence.previews): None until the preview job ran, then made | failed.
    preview_state: Mapped[str | None] = mapped_column(String(16))
    preview_reason: Mapped[str | None] = mapped_column(String(255))  # why there is no preview
    preview_pages: Mapped[int | None] = mapped_column(Integer, default=0)  # stored page images (PDF) or 1 (image)
    # A PDF's pages in all; below MAX_PDF_PAGES and above preview_pages, pages are still owed (0010c_pages).
    preview_page_count: Mapped[int | None] = mapped_column(Integer)
    # A CSV's preview table (core.evidence.csv_preview; migration 0013). Deferred: lists of files
    # never load it; evidence content, so cleared whenever the file is deleted (mark_deleted).
    preview_table: Mapped[dict | None] = mapped_column(JSON(none_as_null=True), deferred=True)
    # 64-bit perceptual hash of an image (signed, as PostgreSQL's BIGINT holds it), and its four
    # 16-bit bands, each indexed: two hashes within Hamming distance 3 share at least one band.
    phash: Mapped[int | None] = mapped_column(BigInteger)
    phash_b0: Mapped[int | None] = mapped_column(Integer)
    phash_b1: Mapped[int | None] = mapped_column(Integer)
    phash_b2: Mapped[int | None] = mapped_column(Integer)
    phash_b3: Mapped[int | None] = mapped_column(Integer)
    near_duplicate_of_id: Mapped[int | None] = mapped_column(BigId)  # nearest earlier image when hashed
    # Integrity sweep (core/evidence/integrity.py): when the stored bytes last matched sha256, and
    # `mismatch`/`missing` once they did not; such a file is quarantined and never served again.
    last_verified_at = mapped_column(UTCDateTime, index=True)
    integrity_state: Mapped[str | None] = mapped_column(String(16))
    quarantined_at = mapped_column(UTCDateTime)

    submission = relationship("Submission", back_populates="files")

    def mark_deleted(self, when) -> None:
        """Mark the file deleted at `when` (an aware datetime) in the caller's transaction, taking
        its CSV preview table with it: the row stays for the audit trail, the evidence's content
        does not (retention, DESIGN.md)."""
        self.deleted_at = when
        self.preview_table = None

    @property
    def is_quarantined(self) -> bool:
        return self.quarantined_at is not None

    @property
    def is_image(self) -> bool:
        return self.ext in ("jpg", "jpeg", "png")


class LedgerEntry(db.Model):
    """Append-only. Corrections and revocations are new rows (reverses_id points back)."""
    __tablename__ = "points_ledger"
    __table_args__ = (
        UniqueConstraint("external_source", "external_event_id", name="uq_points_ledger_source_event"),
        Index("ix_points_ledger_user_activity", "user_id", "activity_code"),
        Index("ix_points_ledger_activity_source_time", "activity_code", "external_source", "event_time"),
        Index("ix_points_ledger_created_at", "created_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    activity_code: Mapped[str] = mapped_column(String(32))
    delta_points: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(32), default="awarded")  # awarded|cap_reached|revoked|correction|tag_removed
    external_source: Mapped[str] = mapped_column(String(32))
    external_event_id: Mapped[str] = mapped_column(String(255))
    event_time = mapped_column(UTCDateTime, nullable=False)
    session_date = mapped_column(Date)
    counters: Mapped[dict] = mapped_column(JSON, default=dict)
    reverses_id: Mapped[int | None] = mapped_column(BigId)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at = mapped_column(UTCDateTime, default=utcnow)


class OutboxRecord(db.Model):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next_attempt", "status", "next_attempt_at"),
                      Index("ix_outbox_created_at", "created_at"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    payload: Mapped[dict] = mapped_column(JSON)
    ledger_id: Mapped[int | None] = mapped_column(BigId)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at = mapped_column(UTCDateTime)
    created_at = mapped_column(UTCDateTime, default=utcnow)


class KajabiEvent(db.Model):
    __tablename__ = "kajabi_events"
    __table_args__ = (Index("ix_kajabi_events_state_received", "state", "received_at"),
                      # The SLO windows (/api/slo?window=, the burn-rate gauges) read recent events only.
                      Index("ix_kajabi_events_received_at", "received_at"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)  # raw; anonymised after KAJABI_RAW_RETENTION_DAYS
    contact_id: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    email_hash: Mapped[str | None] = mapped_column(String(64))
    tag: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(24), default="received")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    ledger_id: Mapped[int | None] = mapped_column(BigId)
    result_code: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    received_at = mapped_column(UTCDateTime, default=utcnow)
    processed_at = mapped_column(UTCDateTime)
    ledgered_at = mapped_column(UTCDateTime)
    anonymised_at = mapped_column(UTCDateTime)
    # When the event could first be matched: arrival, or the creation of the user or tag mapping
    # that matched it (the SLO's tag -> ledger latency counts from here; core.monitoring.slo).
    matchable_at = mapped_column(UTCDateTime)


class KajabiLatency5m(db.Model):
    """Tag -> ledger latencies of the Kajabi events received in one 5-minute slot (UTC), counted
    per bucket (core.points.latency_hist). Written in the transaction that ledgers the events;
    kept 35 days."""
    __tablename__ = "kajabi_latency_hist_5m"
    start = mapped_column(UTCDateTime, primary_key=True)
    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


class KajabiLatencyHour(db.Model):
    """The same per UTC hour; kept 35 days."""
    __tablename__ = "kajabi_latency_hist"
    hour = mapped_column(UTCDateTime, primary_key=True)
    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


class KajabiLatencyDay(db.Model):
    """The same per UTC day, so a 28-day figure reads 28 days of rows, not 672 hours."""
    __tablename__ = "kajabi_latency_hist_day"
    day = mapped_column(UTCDateTime, primary_key=True)
    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


class KajabiStateCount(db.Model):
    """Kajabi events per state, except `received` (counted live: a small backlog on the
    (state, received_at) index, and a counter row for it would serialise the webhook's inserts)."""
    __tablename__ = "kajabi_state_counts"
    state: Mapped[str] = mapped_column(String(24), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_subject", "subject_type", "subject_id"),
                      Index("ix_audit_events_created_at", "created_at"),
                      Index("ix_audit_events_actor_action", "actor_id", "action", "created_at"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at = mapped_column(UTCDateTime, default=utcnow)


class Run(db.Model):
    """Retention and backfill runs with their counts. Backfills: planned -> verified -> applied."""
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # retention | backfill
    backfill_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    items: Mapped[list] = mapped_column(JSON, default=list)
    started_by: Mapped[str | None] = mapped_column(String(320))
    created_at = mapped_column(UTCDateTime, default=utcnow)
    finished_at = mapped_column(UTCDateTime)


class DailyRollup(db.Model):
    __tablename__ = "daily_rollups"
    day = mapped_column(Date, primary_key=True)
    activity_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    events: Mapped[int] = mapped_column(Integer, default=0)
    users: Mapped[int] = mapped_column(Integer, default=0)
    updated_at = mapped_column(UTCDateTime, default=utcnow)


class Notification(db.Model):
    """One e-mail per event (core.notifications). The idempotency key is claimed before sending:
    pending -> sending (claimed_at) -> sent | skipped | failed; a `sending` claim older than the
    lease is taken over (a crash between claim and send), a `sent` one is never sent again."""
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_state_created", "state", "created_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)  # the message's facts, fixed at the event
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at = mapped_column(UTCDateTime)
    sent_at = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at = mapped_column(UTCDateTime, default=utcnow)


class PendingUpload(db.Model):
    """A good file of a refused form, kept for the retry (core.evidence.pending): its object is
    stored under the evidence layout, never served or scanned until the form goes through (then
    it is copied into the submission and this row and its object go). Purged after a day."""
    __tablename__ = "pending_uploads"
    __table_args__ = (Index("ix_pending_uploads_user_created", "user_id", "created_at"),
                      Index("ix_pending_uploads_created", "created_at"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    storage_key: Mapped[str] = mapped_column(String(512), unique=True)
    original_name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigId)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at = mapped_column(UTCDateTime, default=utcnow)


class SinkKey(db.Model):
    """An outbox key a sink applied (core.delivery.sink_keys): kept in the database so a Redis
    that loses its data cannot make a replay apply it twice. `file_offset` is set while the key's
    analytics line is being written, and cleared once it is written."""
    __tablename__ = "sink_keys"
    __table_args__ = (Index("ix_sink_keys_applied_at", "applied_at"),)
    sink: Mapped[str] = mapped_column(String(32), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    file_offset: Mapped[int | None] = mapped_column(BigInteger)
    applied_at = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class OpsSample(db.Model):
    """One row a minute (jobs.ops.sample): backlogs for the admin dashboard's 24-hour charts.
    Rows older than ops_samples.RETENTION are deleted by the same job."""
    __tablename__ = "ops_samples"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    taken_at = mapped_column(UTCDateTime, nullable=False, unique=True)  # whole minute, UTC
    in_review: Mapped[int] = mapped_column(Integer, default=0)
    scans_pending: Mapped[int] = mapped_column(Integer, default=0)
    outbox_pending: Mapped[int] = mapped_column(Integer, default=0)
    outbox_lag_s: Mapped[float | None] = mapped_column(db.Float)
    unmatched: Mapped[int] = mapped_column(Integer, default=0)
    queue_depths: Mapped[dict] = mapped_column(JSON, default=dict)  # {queue name: jobs waiting}
