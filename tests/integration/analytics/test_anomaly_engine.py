"""The anomaly engine running on a live metric in a real Prometheus (tests/integration/
prometheus.py): a spike raises one alert with the severity its score calls for, the alert
stays one while the spike lasts, and it resolves when the metric is back; the webhook hears
both. The default (tail-probability) detector alerts only in the metric's direction."""

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
        name="load",
        query='sum(xynergy_test_load{service="$service"})',
        detector="robustZ",
        window=60,
        min_history=5,
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


async def test_the_default_detector_alerts_only_in_the_metrics_direction(
    scrape_target: ScrapeTarget, prometheus_factory: Callable[..., PrometheusServer]
) -> None:
    """Two series: `a` rises, `b` falls. `b` is watched twice, upwards (an error rate) and both
    ways: only the second alerts on its fall; `a`'s rise alerts upwards and resolves."""
    for series in ("a", "b"):
        scrape_target.set("xynergy_test_series", BASE, series=series, service="crm")
    prom = prometheus_factory(targets=[scrape_target.address])
    store = DuckDBStore()
    await store.open()

    def watched(name: str, series: str, direction: str) -> MetricQuery:
        query = f'sum(xynergy_test_series{{service="$service",series="{series}"}})'
        return MetricQuery(name=name, query=query, direction=direction, window=60, min_history=5)

    metrics = [
        watched("a_up", "a", "up"),
        watched("b_up", "b", "up"),
        watched("b_both", "b", "both"),
    ]
    assert {m.detector for m in metrics} == {"tailProbability"}
    async with httpx.AsyncClient(timeout=10) as http:

        async def watches() -> list[Watch]:
            return [Watch("acme", "crm")]

        engine = AnomalyEngine(
            PrometheusClient(prom.url, http),
            store,
            metrics=metrics,
            interval=0.5,
            resolve_after=3,
            escalate_after=3600,
            webhooks=[],
            http=http,
            watches=watches,
        )
        task = asyncio.create_task(engine.run())
        a_up, b_up, b_both = (("acme", "crm", m.name) for m in metrics)

        async def ticked(n: int) -> bool:
            return engine.ticks >= n

        async def warmed() -> bool:  # the tail detector alarms from its tenth point
            return all(s.points >= 15 for s in engine.series.values()) and len(
                engine.series
            ) == len(metrics)

        await wait_for(warmed, within=60, what="fifteen points of each series")
        assert engine.open == {}

        scrape_target.set("xynergy_test_series", BASE - 0.07, series="b", service="crm")

        async def fell() -> bool:
            return b_both in engine.open

        await wait_for(fell, within=30, what="the fall to alert both ways")
        assert engine.open[b_both].value < BASE
        seen = engine.ticks
        await wait_for(lambda: ticked(seen + 5), within=30, what="five more ticks of the fall")
        assert engine.series[b_up].last["value"] < BASE
        assert [a.metric for a in engine.alerts("acme")] == ["b_both"]

        scrape_target.set("xynergy_test_series", SPIKE, series="a", service="crm")

        async def rose() -> bool:
            return a_up in engine.open

        await wait_for(rose, within=30, what="the rise to alert upwards")
        assert engine.open[a_up].value > BASE
        scrape_target.set("xynergy_test_series", BASE, series="a", service="crm")

        async def back() -> bool:
            return a_up not in engine.open

        await wait_for(back, within=30, what="the rise's alert to resolve")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert b_up not in engine.open
    assert sorted(a.metric for a in engine.alerts("acme")) == ["a_up", "b_both"]
    await store.close()
