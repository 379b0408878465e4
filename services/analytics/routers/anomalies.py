"""``/phase3/anomaly-detection``: the running engine's alerts, and detection on demand."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from services.analytics.alerts import Watch
from services.analytics.deps import AnalyticsDep, CallerDep
from services.common.errors import ApiError

__all__ = ["alert_summary", "router"]

router = APIRouter(prefix="/phase3/anomaly-detection", tags=["anomaly-detection"])


def alert_summary(a: AnalyticsDep, tenant: str) -> dict[str, Any]:
    if a.anomalies is None:
        return {"enabled": False, "open": [], "resolved": [], "by_severity": {}}
    alerts = a.anomalies.alerts(tenant)
    live = [asdict(x) for x in alerts if x.state == "open"]
    return {
        "enabled": True,
        "open": live,
        "resolved": [asdict(x) for x in alerts if x.state == "resolved"],
        "by_severity": dict(Counter(x["severity"] for x in live)),
        "metrics": [m.name for m in a.anomalies.metrics],
        "ticks": a.anomalies.ticks,
    }


@router.get("/dashboard", summary="Open and recently resolved alerts")
async def dashboard(a: AnalyticsDep, caller: CallerDep) -> dict[str, Any]:
    return {"tenant": caller.tenant, **alert_summary(a, caller.tenant)}


@router.post("/detect/{service_name}", summary="Score a service's recent metrics now")
async def detect(service_name: str, a: AnalyticsDep, caller: CallerDep) -> dict[str, Any]:
    engine = a.need_anomalies()
    watch = Watch(caller.tenant, service_name)
    if watch not in await engine.watches():
        raise ApiError(404, f"service_name: no service {service_name!r} of this tenant is watched")
    results = await engine.detect(watch, now=time.time())
    return {"tenant": caller.tenant, "service": service_name, "metrics": results}
