"""What feeds cost intelligence besides the event bus: the instances of every XynergyService
(sampled from the cluster at each start of a ``usage_interval_seconds`` interval) and the AI
router's ledger (``GET /api/v1/ai/usage`` per tenant, called with a signed identity of that
tenant)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from lightkube.utils.quantity import parse_quantity

from services.analytics.cluster import TENANT_LABEL, ClusterReader
from services.analytics.records import AiUsageRow, UsageRow, utc
from services.analytics.stores import AnalyticsStore
from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.tenancy import Identity

__all__ = ["AiLedger", "UsageSampler", "periodic", "sample_id", "usage_rows"]

log = logging.getLogger("xynergy.analytics")


def sample_id(service: str, *, now: float, seconds: float) -> str:
    """The id of a service's sample at ``now`` when sampling every ``seconds``: the service
    and the start of the interval ``now`` falls in, so every sample of one interval (a
    restarted sampler, a second replica) has one id and is stored once."""
    return f"{service}/{utc(math.floor(now / seconds) * seconds).isoformat()}"


def usage_rows(services: list[Any], *, now: float, seconds: float) -> list[UsageRow]:
    """One row per parsed XynergyService: its ready instances over the last ``seconds``,
    identified by :func:`sample_id`."""
    out = []
    for p in services:
        if p.obj is None:
            continue
        tenant = (p.obj.metadata.labels or {}).get(TENANT_LABEL)
        if not tenant:
            continue
        sizing = p.obj.spec.sizing()
        status = p.obj.status
        instances = (status.ready_replicas if status else None) or 0
        out.append(
            UsageRow(
                tenant=tenant,
                service=p.name,
                ts=utc(now),
                profile=str(p.obj.spec.profile),
                instances=float(instances),
                seconds=seconds,
                vcpu=float(parse_quantity(sizing.cpu) or 0),
                memory_gib=float(parse_quantity(sizing.memory) or 0) / 2**30,
                sample_id=sample_id(p.name, now=now, seconds=seconds),
            )
        )
    return out


class UsageSampler:
    def __init__(
        self,
        cluster: ClusterReader,
        store: AnalyticsStore,
        *,
        interval: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.cluster = cluster
        self.store = store
        self.interval = interval
        self.clock = clock
        self.sleep = sleep

    async def sample(self, *, at: float | None = None) -> int:
        """Write a row per service for the interval ``at`` falls in (default: now)."""
        services = await self.cluster.services(None)
        now = self.clock() if at is None else at
        rows = usage_rows(services, now=now, seconds=self.interval)
        await self.store.add_usage(rows)
        return len(rows)

    async def run(self) -> None:
        """Sample at each interval start of the wall clock (UTC) until cancelled: the
        interval it starts in at once, then each next start, so every replica samples one
        interval at one instant and a slow read does not drift into skipping one. A sample
        that ends past the next start skips to the start after its end (logged); each
        interval is sampled at most once. Failures are logged."""
        index = math.floor(self.clock() / self.interval)
        while True:
            try:
                await self.sample(at=index * self.interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("usage sampling failed; next at the next interval start")
            after = max(math.floor(self.clock() / self.interval), index) + 1
            if after > index + 1:
                log.warning("usage sample overran: %d interval(s) not sampled", after - index - 1)
            while (left := after * self.interval - self.clock()) > 0:
                await self.sleep(left)  # again if it woke early
            index = max(math.floor(self.clock() / self.interval), after)


class AiLedger:
    """Snapshots of the router's ledger for a tenant into the store."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        store: AnalyticsStore,
        *,
        url: str,
        signer: InternalIdentitySigner,
    ) -> None:
        self.http = http
        self.store = store
        self.url = url.rstrip("/") + "/api/v1/ai/usage"
        self.signer = signer
        self.tenants: set[str] = set()

    async def snapshot(self, tenant: str) -> int:
        """Record the tenant's ledger now; 0 rows when the router is unreachable (logged)."""
        self.tenants.add(tenant)
        who = Identity(user_id="analytics", tenant_id=tenant, roles=("viewer",), source="internal")
        try:
            r = await self.http.get(self.url, headers={IDENTITY_HEADER: self.signer.sign(who)})
            r.raise_for_status()
            body = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("AI ledger not read: %s", type(exc).__name__)
            return 0
        now = utc(time.time())
        rows = [
            AiUsageRow(
                tenant=tenant,
                ts=now,
                provider=p["provider"],
                model=p["model"],
                requests=int(p["requests"]),
                prompt_tokens=int(p["prompt_tokens"]),
                completion_tokens=int(p["completion_tokens"]),
                cost_usd=float(p["cost_usd"]),
            )
            for p in body.get("providers", [])
        ]
        await self.store.add_ai_usage(rows)
        return len(rows)

    async def snapshot_all(self) -> None:
        for tenant in sorted(self.tenants):
            await self.snapshot(tenant)


async def periodic(name: str, interval: float, action: Callable[[], Any]) -> None:
    """Run ``action`` every ``interval`` seconds until cancelled; failures are logged."""
    while True:
        try:
            await action()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; next try in %.0f s", name, interval)
        await asyncio.sleep(interval)


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
