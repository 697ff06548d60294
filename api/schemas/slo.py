"""GET /api/slo parameters: `window`, how far back the tag -> ledger figure looks
(core.monitoring.windows: <number><m|h|d> from 5m to 28d, default 24h)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.monitoring import windows


class SloQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    window: str = Field(windows.DEFAULT, pattern=r"^[0-9]{1,5}[mhd]$", max_length=6,
                        description="How far back the tag -> ledger figure looks: <number><m|h|d> from 5m to 28d")

    @field_validator("window")
    @classmethod
    def _within_bounds(cls, value: str) -> str:
        try:
            windows.parse_window(value)
        except Exception as exc:  # the range check's own message
            raise ValueError(getattr(exc, "message", "out of range 5m..28d")) from None
        return value
