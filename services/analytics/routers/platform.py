"""The platform summaries: ``/phase3/complete-dashboard``, ``/bigquery/optimization-summary``,
``/pubsub/consolidation-metrics``, ``/container/optimization-summary``,
``/monitoring/platform-dashboard``. Each section that cannot be read (no cluster, no
Prometheus) says why instead of failing the whole answer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter
from lightkube.utils.quantity import parse_quantity

from services.analytics.deps import AnalyticsDep, CallerDep
from services.analytics.routers.anomalies import alert_summary
from services.analytics.routers.costs import cost_dashboard
from services.analytics.routers.scaling import policy_view, rollout_view
from services.analytics.routers.workflows import workflow_summary
from services.common.errors import ApiError

__all__ = ["router"]

router = APIRouter(tags=["platform"])


async def _section(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except ApiError as exc:
        return {"error": exc.message}


async def _services(a: AnalyticsDep, tenant: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in await a.need_cluster().services(tenant):
        if p.obj is None:
            out.append({"name": p.name, "namespace": p.namespace, "error": p.error})
            continue
        sizing, st = p.obj.spec.sizing(), p.obj.status
        ready = next((c for c in (st.conditions if st else []) if c.type == "Ready"), None)
        out.append(
            {
                "name": p.name,
                "namespace": p.namespace,
                "profile": str(p.obj.spec.profile),
                "backend": str(p.obj.spec.backend),
                "url": st.url if st else None,
                "replicas": st.replicas if st else None,
                "ready_replicas": st.ready_replicas if st else None,
                "cpu": sizing.cpu,
                "memory": sizing.memory,
                "min_instances": sizing.min_instances,
                "max_instances": sizing.max_instances,
                "ready": None
                if ready is None
                else {"status": ready.status, "reason": ready.reason, "message": ready.message},
            }
        )
    return out


@router.get("/phase3/complete-dashboard", summary="Every Phase 3 view in one answer")
async def complete(a: AnalyticsDep, caller: CallerDep) -> dict[str, Any]:
    t = caller.tenant

    async def policies() -> list[dict[str, Any]]:
        return [policy_view(p) for p in await a.need_cluster().policies(t)]

    async def rollouts() -> list[dict[str, Any]]:
        return [rollout_view(p) for p in await a.need_cluster().rollouts(t)]

    return {
        "tenant": t,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(),
        "services": await _section(_services(a, t)),
        "costs": await _section(cost_dashboard(a, t)),
        "anomalies": alert_summary(a, t),
        "workflows": await _section(workflow_summary(a, t)),
        "scaling": await _section(policies()),
        "deployments": await _section(rollouts()),
    }


@router.get("/bigquery/optimization-summary", summary="The store: tables, partitioning, advice")
async def bigquery(a: AnalyticsDep, caller: CallerDep) -> dict[str, Any]:
    tables = await a.store.tables()
    advice = [
        "every query filters on tenant (the first clustering column) and on the partitioning "
        "time column, so it reads only that tenant's blocks of the partitions in its window",
        "workflow runs are one row each with their steps nested: "
        "recorded whole, read without a join",
    ]
    if a.store.engine == "duckdb":
        advice.append(
            "the embedded DuckDB store is in use; "
            "set XYNERGY_ANALYTICS_STORE=bigquery for production"
        )
    return {
        "tenant": caller.tenant,
        "engine": a.store.engine,
        "tables": [
            {"name": x.name, "partitioning": x.partitioning, "clustering": list(x.clustering)}
            for x in tables
        ],
        "partition_expiration_days": a.settings.bigquery_partition_expiration_days,
        "recommendations": advice,
    }


@router.get("/pubsub/consolidation-metrics", summary="The event buses: topics and what came in")
async def pubsub(a: AnalyticsDep, caller: CallerDep) -> dict[str, Any]:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=24)
    counts = await a.store.event_counts(caller.tenant, since=since)
    ingest = a.ingest
    subscribed = bool(ingest and ingest.subscribed.is_set())
    buffered = len(ingest.buffer) if ingest else 0
    buses = ["redis", *(["pubsub"] if a.pubsub is not None else [])]
    return {
        "tenant": caller.tenant,
        "bus": "+".join(buses),
        "buses": buses,
        "topics": a.settings.ingest_topics,
        "events_24h": counts,
        "total_24h": sum(counts.values()),
        "subscribed": subscribed,
        "buffered": buffered,
        "redis": {
            "topics": a.settings.ingest_topics,
            "subscribed": subscribed,
            "buffered": buffered,
        },
        "pubsub": a.pubsub.view(caller.tenant) if a.pubsub is not None else None,
    }


@router.get("/container/optimization-summary", summary="Instances, sizing and cost per service")
async def container(a: AnalyticsDep, caller: CallerDep) -> dict[str, Any]:
    services = await _services(a, caller.tenant)
    prices = a.settings.prices
    out = []
    for s in services:
        if "error" in s:
            out.append(s)
            continue
        per_hour = 3600 * (
            float(parse_quantity(s["cpu"]) or 0) * prices.vcpu_second
            + float(parse_quantity(s["memory"]) or 0) / 2**30 * prices.gib_second
        )
        advice = []
        if (s["replicas"] or 0) >= s["max_instances"]:
            advice.append("at its maximum instances: raise maxInstances or add a ScalingPolicy")
        if s["min_instances"] > 0 and (s["ready_replicas"] or 0) <= s["min_instances"]:
            advice.append(
                "running at its minimum: minInstances 0 would let it scale to zero when idle"
            )
        out.append(
            {
                **s,
                "cost_per_instance_hour_usd": per_hour,
                "cost_per_hour_usd": per_hour * (s["ready_replicas"] or 0),
                "advice": advice,
            }
        )
    return {"tenant": caller.tenant, "services": out}


@router.get("/monitoring/platform-dashboard", summary="Health, alerts and the data layer")
async def monitoring(a: AnalyticsDep, caller: CallerDep) -> dict[str, Any]:
    services = await _section(_services(a, caller.tenant))
    healthy = (
        [
            s
            for s in services
            if isinstance(s, dict) and (s.get("ready") or {}).get("status") == "True"
        ]
        if isinstance(services, list)
        else []
    )
    return {
        "tenant": caller.tenant,
        "services": services,
        "healthy": len(healthy),
        "alerts": alert_summary(a, caller.tenant),
        "ingest": {
            "subscribed": bool(a.ingest and a.ingest.subscribed.is_set()),
            "ingested": a.ingest.ingested if a.ingest else 0,
        },
        "store": a.store.engine,
        "uptime_seconds": dt.datetime.now(dt.UTC).timestamp() - a.started,
    }
