"""Open alerts survive a restart of the analytics service: an app opens an alert on a live
metric in a real Prometheus, stops; a new app instance on the same DuckDB file shows that
alert open (the same id), resolves it when the metric is back, and a third instance shows it
resolved, with one opening and one resolution in the store. A second engine on the same store
(a replica) shows the first one's open alert and opens none of its own."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway.conftest import INTERNAL_KEY, RedisServer, serve, wait_for
from prometheus import PrometheusServer, ScrapeTarget

from services.analytics.alerts import ALERT_TOPIC, Alert, AnomalyEngine
from services.analytics.app import create_app
from services.analytics.prometheus import PrometheusClient
from services.analytics.settings import AnalyticsSettings, MetricQuery
from services.analytics.stores.duckdb import DuckDBStore
from services.common.settings import InternalIdentitySettings

pytestmark = pytest.mark.integration
BASE, SPIKE = 10.0, 10.07  # a constant history: the spike alarms the tail detector
KEY = ("acme", "crm", "load")
INTERNAL = InternalIdentitySettings(signing_key=INTERNAL_KEY)


def _settings(db: Path, prom: PrometheusServer, redis: RedisServer) -> AnalyticsSettings:
    metric = MetricQuery(
        name="load", query='sum(xynergy_test_load{service="$service"})', window=60, min_history=5
    )
    return AnalyticsSettings(
        duckdb_path=str(db),
        redis_url=redis.url,
        prometheus_url=prom.url,
        kubernetes=False,
        anomaly_tenant="acme",
        anomaly_services=["crm"],
        anomaly_metrics=[metric],
        anomaly_interval_seconds=0.5,
        anomaly_resolve_after=3,
        usage_interval_seconds=3600,
    )


def _engine(app: Any) -> AnomalyEngine:
    engine = app.state.analytics.anomalies
    assert engine is not None
    return engine  # type: ignore[no-any-return]


async def _ticked(engine: AnomalyEngine, n: int = 1) -> None:
    async def done() -> bool:
        return engine.ticks >= n

    await wait_for(done, within=30, what=f"{n} anomaly ticks")


async def _replica_sees(engine: AnomalyEngine, settings: AnalyticsSettings) -> Alert:
    """A second engine on the same store (as replicas on one BigQuery dataset) after one
    tick: the alert it shows for the series (it must not open its own)."""
    async with httpx.AsyncClient(timeout=10) as http:
        other = AnomalyEngine(
            PrometheusClient(settings.prometheus_url, http),
            engine.store,
            metrics=engine.metrics,
            interval=engine.interval,
            resolve_after=engine.resolve_after,
            escalate_after=engine.escalate_after,
            webhooks=[],
            http=http,
            watches=engine.watches,
        )
        await other.tick()
    [alert] = other.alerts("acme")
    return alert


async def test_open_alerts_survive_a_restart(
    tmp_path: Path,
    redis_server: RedisServer,
    scrape_target: ScrapeTarget,
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    scrape_target.set("xynergy_test_load", BASE, service="crm")
    settings = _settings(
        tmp_path / "analytics.duckdb",
        prometheus_factory(targets=[scrape_target.address]),
        redis_server,
    )
    app = create_app(settings, internal_settings=INTERNAL)
    async with serve(app):
        engine = _engine(app)

        async def scoring() -> bool:  # the tail detector alarms from its tenth point
            series = engine.series.get(KEY)
            return series is not None and series.points >= 15

        await wait_for(scoring, within=60, what="fifteen points of the live metric")
        scrape_target.set("xynergy_test_load", SPIKE, service="crm")

        async def opened() -> bool:
            return KEY in engine.open

        await wait_for(opened, within=30, what="an alert")
        first = engine.open[KEY]
        replica = await _replica_sees(engine, settings)
        assert (replica.id, replica.state) == (first.id, "open")

    app = create_app(
        settings, internal_settings=INTERNAL
    )  # the restart: a new instance on the same store
    async with serve(app):
        engine = _engine(app)
        await _ticked(engine)
        [alert] = engine.alerts("acme")
        assert (alert.id, alert.state, alert.severity) == (first.id, "open", first.severity)
        scrape_target.set("xynergy_test_load", BASE, service="crm")

        async def resolved() -> bool:
            return KEY not in engine.open

        await wait_for(resolved, within=30, what="the restored alert to resolve")

    app = create_app(settings, internal_settings=INTERNAL)
    async with serve(app):
        engine = _engine(app)
        await _ticked(engine)
        assert [(a.id, a.state) for a in engine.alerts("acme")] == [(first.id, "resolved")]
        assert engine.open == {}

    store = DuckDBStore(settings.duckdb_path)
    await store.open()
    rows = await store.events(
        "acme", since=dt.datetime(2000, 1, 1, tzinfo=dt.UTC), topic=ALERT_TOPIC
    )
    await store.close()
    changes = sorted(
        (json.loads(r.payload)["change"], json.loads(r.payload)["alert"]["id"]) for r in rows
    )
    assert changes == [("opened", first.id), ("resolved", first.id)]
