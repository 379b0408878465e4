"""The anomaly engine running on a live metric in a real Prometheus (tests/integration/
prometheus.py): a spike raises one alert with the severity its score calls for, the alert
stays one while the spike lasts, and it resolves when the metric is back; the webhook hears
both."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Any

import httpx
from gateway.conftest import serve, wait_for
from prometheus import PrometheusServer, ScrapeTarget
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.analytics.alerts import AnomalyEngine, Watch
from services.analytics.prometheus import PrometheusClient
from services.analytics.records import utc
from services.analytics.settings import MetricQuery
from services.analytics.stores.duckdb import DuckDBStore

BASE = 10.0
# Constant history: the robust scale is its floor, 0.1% of the median (0.01), so 10.07 scores
# 7 robust sigmas: CRITICAL (6 <= score < 10 with RobustZScore's default thresholds).
SPIKE = 10.07


async def test_a_spike_opens_one_alert_which_resolves(
    scrape_target: ScrapeTarget, prometheus_factory: Callable[..., PrometheusServer]
) -> None:
    scrape_target.set("xynergy_test_load", BASE, service="crm")
    prom = prometheus_factory(targets=[scrape_target.address])
    heard: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        heard.append(await request.json())
        return JSONResponse({})

    store = DuckDBStore()
    await store.open()
    metric = MetricQuery(
        name="load", query='sum(xynergy_test_load{service="$service"})', window=60, min_history=5
    )
    async with contextlib.AsyncExitStack() as stack:
        hook_url = await stack.enter_async_context(
            serve(Starlette(routes=[Route("/", hook, methods=["POST"])]))
        )
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))

        async def watches() -> list[Watch]:
            return [Watch("acme", "crm")]

        engine = AnomalyEngine(
            PrometheusClient(prom.url, http),
            store,
            metrics=[metric],
            interval=0.5,
            resolve_after=3,
            escalate_after=3600,
            webhooks=[hook_url + "/"],
            http=http,
            watches=watches,
        )
        task = asyncio.create_task(engine.run())
        key = ("acme", "crm", "load")

        async def scoring() -> bool:
            last = engine.series.get(key)
            return last is not None and math.isfinite(last.last.get("score", math.nan))

        await wait_for(scoring, within=60, what="the detector scoring the live metric")
        assert engine.open == {}

        scrape_target.set("xynergy_test_load", SPIKE, service="crm")

        async def opened() -> bool:
            return key in engine.open

        await wait_for(opened, within=30, what="an alert")
        alert = engine.open[key]
        assert alert.severity == "CRITICAL"
        ticks = engine.ticks

        async def three_more() -> bool:
            return engine.ticks >= ticks + 3

        await wait_for(three_more, within=30, what="more ticks during the spike")
        assert engine.open[key] is alert

        scrape_target.set("xynergy_test_load", BASE, service="crm")

        async def resolved() -> bool:
            return key not in engine.open

        await wait_for(resolved, within=30, what="the alert to resolve")

        async def told() -> bool:
            return len(heard) >= 2

        await wait_for(told, within=10, what="the webhook to hear the resolution")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert alert.state == "resolved"
        assert engine.alerts("acme") == [alert]
        assert engine.alerts("other") == []
        assert [h["change"] for h in heard] == ["opened", "resolved"]
        assert {h["alert"]["id"] for h in heard} == {alert.id}
    counts = await store.event_counts("acme", since=utc(alert.opened_at - 60))
    assert counts == {"anomaly-alerts": 2}
    await store.close()
