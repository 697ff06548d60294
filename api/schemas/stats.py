"""GET /api/stats parameters (CONTRACT.md)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.points.stats import PERIOD_DAYS

Period = Literal[tuple(PERIOD_DAYS)]  # day, week, month, all: the periods core.points.stats knows


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    period: Period = Field("all", description="Aggregate over the last day, week (7 days), month (30 days), or all time")
