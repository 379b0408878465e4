"""The rows the analytics store keeps. Every row carries its tenant; every read names one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AiUsageRow", "EventRow", "RunRow", "TableInfo", "UsageHour", "UsageRow", "utc"]


def utc(ts: float) -> dt.datetime:
    """Seconds since the epoch as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


@dataclass(frozen=True)
class UsageRow:
    """One sample of a service's instances over ``seconds`` (instance-seconds = product).
    ``sample_id`` (unique per tenant) makes it written once; None = always written."""

    tenant: str
    service: str
    ts: dt.datetime
    profile: str
    instances: float
    seconds: float
    vcpu: float
    memory_gib: float
    sample_id: str | None = None


@dataclass(frozen=True)
class UsageHour:
    """A service's usage summed over one hour."""

    service: str
    hour: dt.datetime
    instance_seconds: float
    vcpu_seconds: float
    gib_seconds: float


@dataclass(frozen=True)
class EventRow:
    """A platform event as it came off the bus (payload as JSON text)."""

    tenant: str
    topic: str
    ts: dt.datetime
    event_id: str
    seq: int | None
    payload: str


@dataclass(frozen=True)
class AiUsageRow:
    """The AI router's ledger for one (provider, model) at ``ts``: cumulative counters."""

    tenant: str
    ts: dt.datetime
    provider: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class RunRow:
    """One finished workflow run with all its steps (one row: recorded whole or not at all)."""

    tenant: str
    run_id: str
    workflow: str
    goal: str
    status: str
    started: dt.datetime
    finished: dt.datetime
    cost_usd: float
    predicted_cost_usd: float
    error: str
    steps: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TableInfo:
    """What the store says about one of its tables (for the storage summary)."""

    name: str
    rows: int
    partitioning: str
    clustering: tuple[str, ...]
