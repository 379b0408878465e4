"""What reports read, and the reads they share: the store's rows inside a period (the store
reads from a time on; the end is applied here), time buckets for charts, number formats."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from services.analytics.cluster import ClusterReader
from services.analytics.records import UsageHour
from services.analytics.reports.model import Period
from services.analytics.settings import CloudRunPrices
from services.analytics.stores import AnalyticsStore
from services.common.errors import ApiError

__all__ = ["EVENT_LIMIT", "Sources", "bucket_label", "bucket_of", "buckets", "money", "number"]

EVENT_LIMIT = 10_000
"""At most this many alert events are read for one anomaly report (the report says so)."""


@dataclass(frozen=True)
class Sources:
    store: AnalyticsStore
    prices: CloudRunPrices
    cluster: ClusterReader | None = None

    @classmethod
    def of(cls, parts: Any) -> Sources:
        """The sources of the service's parts (:class:`services.analytics.deps.Analytics`)."""
        return cls(parts.store, parts.settings.prices, parts.cluster)

    async def usage(self, tenant: str, period: Period) -> list[UsageHour]:
        hours = await self.store.usage_hourly(tenant, since=period.start)
        return [h for h in hours if period.holds(h.hour)]

    async def objects(self, what: str, tenant: str) -> tuple[list[Any], str]:
        """The tenant's ``policies`` or ``rollouts``, or none and why they were not read."""
        if self.cluster is None:
            return [], "Not read from Kubernetes: the service has no access to its API."
        try:
            found: list[Any] = await getattr(self.cluster, what)(tenant)
        except ApiError as exc:
            return [], f"Not read from Kubernetes: {exc.message}"
        return found, ""


def buckets(period: Period) -> tuple[dt.timedelta, list[dt.datetime]]:
    """A chart's x axis: hours for up to three days, else days."""
    step = dt.timedelta(hours=1) if period.hours <= 72 else dt.timedelta(days=1)
    first = period.start.replace(minute=0, second=0, microsecond=0)
    if step.days:
        first = first.replace(hour=0)
    out = []
    at = first
    while at < period.end:
        out.append(at)
        at += step
    return step, out


def bucket_of(at: dt.datetime, step: dt.timedelta) -> dt.datetime:
    at = at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if step.days else at


def bucket_label(at: dt.datetime, step: dt.timedelta) -> str:
    return at.strftime("%m-%d") if step.days else at.strftime("%m-%d %H:00")


def money(value: float) -> str:
    return f"{value:.4f}"


def number(value: float) -> str:
    return f"{value:.2f}"
