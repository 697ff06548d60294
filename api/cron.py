"""Cron routes, authorised by `Authorization: Bearer $CRON_SECRET` (constant-time compare).

CRON_SECRET unset -> 503 `not_configured`; no bearer token -> 401 `unauthenticated`; a wrong one
-> 403 `invalid_token`. Retention pages through users: each call enqueues ONE job for one batch
(after the commit that creates its Run row) and says where the next batch starts.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from flask import jsonify, request

from api.blueprint import bp
from core.accounts.users import tokens_equal
from core.platform.db import db
from core.platform.errors import AuthError, NotFound, Unauthenticated, Unavailable, ValidationError
from core.platform.models import Run
from core.platform.queues import enqueue_after_commit
from core.retention.enforcement import BATCH_JOB_PREFIX, BATCH_JOB_TIMEOUT_S, plan_batch, users_total
from core.platform.services import services

_DIGITS = re.compile(r"[0-9]+")

MAX_DAYS = 36500
MAX_LIMIT = 1000


def _require_cron_secret() -> None:
    secret = services().settings.cron_secret
    if not secret:
        raise Unavailable("not_configured", "CRON_SECRET is not set, so this endpoint is off.")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("unauthenticated", "Send Authorization: Bearer <CRON_SECRET>.")
    if not tokens_equal(token.strip(), secret):
        raise AuthError("invalid_token", "A valid bearer token is required.")


def _int_params(spec: dict[str, tuple[int, int, int]]) -> dict[str, int]:
    """{name: (default, min, max)} -> values; every bad one is reported at once."""
    values, problems = {}, []
    for name, (default, low, high) in spec.items():
        raw = request.args.get(name)
        if raw is None or raw == "":
            values[name] = default
            continue
        if not _DIGITS.fullmatch(raw.strip()) or not low <= int(raw) <= high:  # ASCII only: "²".isdigit()
            problems.append({"field": name, "issue": f"must be a whole number from {low} to {high}"})
            continue
        values[name] = int(raw)
    if problems:
        names = ", ".join(p["field"] for p in problems)
        raise ValidationError("invalid_parameter", f"Check the parameters: {names}.", problems)
    return values


@bp.get("/cron/enforce-retention")
def enforce_retention():
    _require_cron_secret()
    settings = services().settings
    params = _int_params({"days": (settings.evidence_retention_days, 1, MAX_DAYS),
                          "limit": (200, 1, MAX_LIMIT), "offset": (0, 0, 10**9)})
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
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    run = None
    if job_id.startswith(BATCH_JOB_PREFIX) and job_id[len(BATCH_JOB_PREFIX):].isdigit():
        run = db.session.get(Run, int(job_id[len(BATCH_JOB_PREFIX):]))
    try:
        job = Job.fetch(job_id, connection=services().redis)
    except NoSuchJobError:
        job = None
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
