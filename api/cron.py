"""Cron routes, authorised by `Authorization: Bearer $CRON_SECRET` (RFC 6750, api.bearer).

CRON_SECRET unset -> 503 `not_configured`; no bearer token -> 401 `unauthenticated`; a wrong one
-> 401 `invalid_token`, both with `WWW-Authenticate`. Parameters are declared in
api.schemas.cron. Retention pages through users: each call enqueues ONE job for one batch (after
the commit that creates its Run row) and says where the next batch starts.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from flask import jsonify, request

from api.bearer import require_bearer
from api.blueprint import bp
from api.schemas.common import BIGINT_MAX, validate_query
from api.schemas.cron import JOB_ID, EnforceRetentionQuery
from core.platform.db import db
from core.platform.errors import NotFound, Unavailable
from core.platform.models import Run
from core.platform.queues import enqueue_after_commit
from core.retention.enforcement import BATCH_JOB_PREFIX, BATCH_JOB_TIMEOUT_S, plan_batch, users_total
from core.platform.services import services

_BATCH_JOB = re.compile(re.escape(BATCH_JOB_PREFIX) + "([0-9]{1,19})")


def _require_cron_secret() -> None:
    secret = services().settings.cron_secret
    if not secret:
        raise Unavailable("not_configured", "CRON_SECRET is not set, so this endpoint is off.")
    require_bearer(secret, "CRON_SECRET")


@bp.get("/cron/enforce-retention")
def enforce_retention():
    _require_cron_secret()
    query = validate_query(EnforceRetentionQuery, request.args)
    params = {"days": query.days or services().settings.evidence_retention_days,
              "limit": query.limit, "offset": query.offset}
    cutoff = datetime.now(timezone.utc) - timedelta(days=params["days"])
    user_ids = plan_batch(params["limit"], params["offset"])
    end = params["offset"] + len(user_ids)
    next_offset = end if user_ids and end < users_total() else None
    run = Run(kind="retention", status="queued", started_by="cron",
              params={**params, "cutoff": cutoff.isoformat(), "users": len(user_ids)})
    db.session.add(run)
    db.session.flush()
    job_id = f"{BATCH_JOB_PREFIX}{run.id}"
    enqueue_after_commit("maintenance", "jobs.retention.enforce_batch", user_ids, cutoff.isoformat(), run.id,
                         job_id=job_id, timeout=BATCH_JOB_TIMEOUT_S)
    db.session.commit()
    response = jsonify({"job_id": job_id, "run_id": run.id, "cutoff": cutoff.isoformat(), "offset": params["offset"],
                        "limit": params["limit"], "users_in_batch": len(user_ids), "next_offset": next_offset})
    response.status_code = 202
    return response


@bp.get("/cron/jobs/<job_id>")
def job_status(job_id: str):
    """State from RQ while it still knows the job, and counts from the Run row, which outlives
    RQ's result TTL."""
    _require_cron_secret()
    if not JOB_ID.fullmatch(job_id):  # not an id RQ could have made (and RQ raises on it)
        raise NotFound("job_not_found", "No job with this id is known.")
    run = None
    batch = _BATCH_JOB.fullmatch(job_id)
    if batch and int(batch.group(1)) <= BIGINT_MAX:
        run = db.session.get(Run, int(batch.group(1)))
    job = services().queues.fetch(job_id)  # this deployment's job only (QUEUE_PREFIX)
    if job is None and run is None:
        raise NotFound("job_not_found", "No job with this id is known.")
    state = job.get_status() if job is not None else None
    body = {"job_id": job_id, "state": str(state.value if hasattr(state, "value") else state) if state else run.status}
    if run is not None:
        body["run"] = {"id": run.id, "kind": run.kind, "status": run.status, "params": run.params,
                       "counts": run.counts, "created_at": run.created_at.isoformat() if run.created_at else None,
                       "finished_at": run.finished_at.isoformat() if run.finished_at else None}
        body["counts"] = run.counts
    if job is not None and state == "finished" and isinstance(job.return_value(), dict):
        body["counts"] = job.return_value()
    if job is not None and state == "failed":
        result = job.latest_result()
        lines = (getattr(result, "exc_string", "") or "").strip().splitlines()
        body["error"] = lines[-1] if lines else "failed"
    return jsonify(body)
