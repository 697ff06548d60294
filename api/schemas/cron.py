"""Cron route parameters (CONTRACT.md: GET /api/cron/enforce-retention, GET /api/cron/jobs/<id>)."""
from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import query_int

MAX_DAYS = 36500  # a hundred years: anything longer is a typo, not a policy
MAX_LIMIT = 1000
MAX_OFFSET = 10**9
# RQ's own job id rule (rq.job.JOB_ID_PATTERN), bounded; anything else is no job of ours.
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
JOB_ID = re.compile(JOB_ID_PATTERN)


class EnforceRetentionQuery(BaseModel):
    """Unknown parameters are ignored; an absent one takes its default (days: EVIDENCE_RETENTION_DAYS)."""
    model_config = ConfigDict(extra="ignore")
    days: query_int(1, MAX_DAYS, "Retention in days (default EVIDENCE_RETENTION_DAYS)") | None = None
    limit: query_int(1, MAX_LIMIT, "Users per batch") = 200
    offset: query_int(0, MAX_OFFSET, "Users to skip") = 0


JobIdParam = Annotated[str, Field(pattern=JOB_ID_PATTERN, description="A job id as returned by enforce-retention")]
