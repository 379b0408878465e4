"""``/phase3/cost-intelligence``: cost per service, forecasts, anomalies, recommendations."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Query

from services.analytics.costs import recommendations
from services.analytics.deps import AnalyticsDep, CallerDep

__all__ = ["cost_dashboard", "router"]

router = APIRouter(prefix="/phase3/cost-intelligence", tags=["cost-intelligence"])


async def cost_dashboard(a: AnalyticsDep, tenant: str, hours: int = 24 * 7) -> dict[str, Any]:
    await a.ledger.snapshot(tenant)
    now = dt.datetime.now(dt.UTC)
    report = await a.costs.report(tenant, now=now, hours=hours)
    anomalies = a.costs.anomalies(report)
    services = sorted(report.services.items(), key=lambda kv: -kv[1])
    return {
        "tenant": tenant,
        "window_hours": hours,
        "total_usd": report.total,
        "services": [{"service": s, "cost_usd": c} for s, c in services],
        "ai": report.ai,
        "anomalies": len(anomalies),
        "recommendations": recommendations(report, anomalies),
        "prices": a.settings.prices.model_dump(),
    }


@router.get("/dashboard", summary="Cost per service (compute and AI tokens) and advice")
async def dashboard(
    a: AnalyticsDep, caller: CallerDep, hours: int = Query(24 * 7, ge=1, le=24 * 90)
) -> dict[str, Any]:
    return await cost_dashboard(a, caller.tenant, hours)


@router.get("/forecast/{service}", summary="Hourly cost forecast with intervals")
async def forecast(service: str, a: AnalyticsDep, caller: CallerDep) -> dict[str, Any]:
    return await a.costs.forecast(caller.tenant, service, now=dt.datetime.now(dt.UTC))


@router.get("/anomalies", summary="Hours whose cost is far above the service's usual")
async def anomalies(
    a: AnalyticsDep, caller: CallerDep, hours: int = Query(24 * 7, ge=1, le=24 * 90)
) -> dict[str, Any]:
    report = await a.costs.report(caller.tenant, now=dt.datetime.now(dt.UTC), hours=hours)
    return {"tenant": caller.tenant, "anomalies": a.costs.anomalies(report)}
