"""The scheduler's settings (prefix ``XYNERGY_ANALYTICS_SCHEDULES_``), listed in
docs/services/analytics.md."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ScheduleSettings"]


class ScheduleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XYNERGY_ANALYTICS_SCHEDULES_", extra="ignore")

    enabled: bool = Field(default=True, description="Run the scheduler loop on this replica.")
    tick_seconds: float = Field(default=5.0, gt=0, le=60)
    grace_seconds: float = Field(
        default=60.0, ge=0, description="How late a due time may run under the skip policy."
    )
    history: int = Field(default=50, ge=1, le=10_000, description="Runs kept per schedule.")
    events_namespace: str = Field(default="default", description="Namespace of failure Events.")
    events_object: str = Field(
        default="analytics", description="The XynergyService failure Events are about."
    )
