"""Evidence file route parameters and the signed-urls body (CONTRACT.md, /api/files/...)."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import BigId, query_int

MAX_BATCH = 100
# Any ttl from 1 s is accepted and clamped to SIGNED_URL_TTL_SECONDS' ceiling of 3600 by storage;
# the upper bound only keeps the number an ordinary one.
MAX_TTL_ASKED = 10**9
LINK_TTL_MAX = 3600

Ttl = Annotated[int, Field(strict=True, ge=1, le=MAX_TTL_ASKED, description="Seconds; clamped to 3600")]


class SignedUrlQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    ttl: query_int(1, MAX_TTL_ASKED, "Seconds; clamped to 3600") | None = None


class SignedUrlsBody(BaseModel):
    """POST /api/files/signed-urls: 1 to 100 file ids; duplicates are answered once."""
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"file_ids": [1, 2], "ttl": 600}]})
    file_ids: Annotated[list[BigId], Field(min_length=1, max_length=MAX_BATCH)]
    ttl: Ttl | None = None
