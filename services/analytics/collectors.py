"""What feeds cost intelligence besides the event bus: the instances of every XynergyService
(sampled from the cluster every ``usage_interval_seconds``) and the AI router's ledger
(``GET /api/v1/ai/usage`` per tenant, called with a signed identity of that tenant)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
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
    def __init__(self, cluster: ClusterReader, store: AnalyticsStore, *, interval: float) -> None:
        self.cluster = cluster
        self.store = store
        self.interval = interval

    async def sample(self) -> int:
        services = await self.cluster.services(None)
        rows = usage_rows(services, now=time.time(), seconds=self.interval)
        await self.store.add_usage(rows)
        return len(rows)


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
