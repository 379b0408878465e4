"""A schedule as a client writes it (:class:`ScheduleSpec`, validated field by field), as it
is kept (:class:`Schedule`), and one run of it (:class:`ScheduleRun`)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from services.analytics.schedules.timing import Policy, check_cron, check_timezone
from services.analytics.workflows import STANDARD

__all__ = ["Outcome", "Schedule", "ScheduleRun", "ScheduleSpec", "redact"]

Outcome = Literal["running", "succeeded", "failed", "missed"]
_SECRETS = (
    re.compile(r"(?i)\bbearer\s+\S+"),
    re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*"),  # a JWT
    re.compile(r"\b(?:sk|pk|rk|xox[abpr])-[\w-]{6,}"),  # API keys, Slack tokens
    re.compile(
        r"(?i)\b((?:access_|refresh_|id_)?token|api[_-]?key|secret|password|authorization)"
        r"(\"?\s*[:=]\s*\"?)[^\s\"&,;]+"
    ),
)


def redact(text: str, *, limit: int = 300) -> str:
    """``text`` with credential-looking parts replaced, cut to ``limit`` characters."""
    for pattern in _SECRETS:
        if pattern.groups:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}REDACTED", text)
        else:
            text = pattern.sub("REDACTED", text)
    return text[:limit]


class ScheduleSpec(BaseModel):
    """``POST /api/v1/schedules``: which workflow runs when, and what a late tick does."""

    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(description="A workflow of the orchestrator.")
    cron: str = Field(max_length=200, description="Five cron fields or an @alias.")
    timezone: str = Field(default="UTC", max_length=64, description="IANA zone of the cron.")
    missed_run_policy: Policy = Field(
        default="skip",
        description="skip: a due time more than the grace late is not run; catchUpOnce: the "
        "latest missed due time runs once.",
    )
    enabled: bool = True
    goal: Literal["cost", "speed", "balanced"] = "balanced"
    inputs: dict[str, str] = Field(default_factory=dict, validate_default=True)

    @field_validator("workflow")
    @classmethod
    def _workflow(cls, value: str) -> str:
        if value not in STANDARD:
            raise ValueError(f"expected one of {sorted(STANDARD)}, got {value!r}")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        check_timezone(value)
        return value

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        workflow = STANDARD.get(info.data.get("workflow", ""))
        missing = [i for i in workflow.inputs if not value.get(i)] if workflow else []
        if missing:
            raise ValueError(f"{missing[0]}: required by {workflow.name}")  # type: ignore[union-attr]
        return value


class Schedule(BaseModel):
    """A kept schedule (read back without re-validating, so it outlives a renamed zone)."""

    id: str
    tenant: str
    workflow: str
    cron: str
    timezone: str
    missed_run_policy: Policy
    enabled: bool
    goal: str
    inputs: dict[str, str] = Field(default_factory=dict)
    created: dt.datetime


class ScheduleRun(BaseModel):
    """One due time of a schedule: claimed by one replica, then finished (or missed)."""

    schedule_id: str
    due: dt.datetime
    outcome: Outcome
    replica: str
    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    run_id: str = ""
    error: str = ""
    missed: int = Field(default=0, description="Earlier due times passed over by this tick.")
    late_seconds: float = 0.0
