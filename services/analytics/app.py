"""The analytics service's application factory (``python -m services.analytics``).

Start-up opens the store (DuckDB or BigQuery) and starts the background work: event ingest
from the bus (Redis, and Google Pub/Sub when a subscription is set), usage sampling of the
cluster's XynergyServices, the AI ledger snapshots and the anomaly engine (when
Prometheus is configured). Shutdown stops them and flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.analytics.alerts import AnomalyEngine, Watch
from services.analytics.cluster import TENANT_LABEL, ClusterReader, KubeClient
from services.analytics.collectors import AiLedger, UsageSampler, cancel_all, periodic
from services.analytics.costs import Costs
from services.analytics.dashboard import StatusPublisher, static_files
from services.analytics.dashboard import router as dashboard_router
from services.analytics.deps import Analytics
from services.analytics.ingest import EventIngest
from services.analytics.prometheus import PrometheusClient
from services.analytics.pubsub import from_settings as pubsub_ingest
from services.analytics.routers import (
    anomalies,
    costs,
    platform,
    reports,
    scaling,
    schedules,
    security,
    workflows,
)
from services.analytics.schedules import build_scheduler
from services.analytics.settings import AnalyticsSettings
from services.analytics.stores import open_store
from services.analytics.workflows import Orchestrator
from services.common.errors import install_error_handlers
from services.common.health import health_routes
from services.common.identity import InternalIdentitySigner, InternalIdentityVerifier
from services.common.openapi import BEHIND_GATEWAY, error_responses
from services.common.settings import InternalIdentitySettings
from services.common.telemetry import configure_logging

__all__ = ["create_app"]
_ANSWERS = error_responses(*BEHIND_GATEWAY, 403, 404, 409, 422, 502, 504)
"""What the API operations can answer besides their success (the AI router, Gmail and the
cluster behind them)."""


def _kube(settings: AnalyticsSettings, given: KubeClient | None) -> ClusterReader | None:
    if given is not None:
        return ClusterReader(given, namespace=settings.namespace)
    if not settings.kubernetes:
        return None
    from lightkube import AsyncClient

    try:
        return ClusterReader(AsyncClient(), namespace=settings.namespace)  # type: ignore[arg-type]
    except Exception:  # no kubeconfig or in-cluster config
        return None


def _analytics_step(parts: Analytics) -> Any:
    async def run(tenant: str, function: str) -> str:
        now = dt.datetime.now(dt.UTC)
        if function == "costs":
            report = await parts.costs.report(tenant, now=now, hours=24)
            return json.dumps({k: round(v, 6) for k, v in report.services.items()})
        if function == "events":
            return json.dumps(
                await parts.store.event_counts(tenant, since=now - dt.timedelta(hours=24))
            )
        raise ValueError(f"unknown analytics function {function!r}")

    return run


def _watches(parts: Analytics) -> Any:
    async def watches() -> list[Watch]:
        out = []
        if parts.settings.anomaly_tenant:
            out += [
                Watch(parts.settings.anomaly_tenant, s) for s in parts.settings.anomaly_services
            ]
        if parts.cluster is not None:
            for p in await parts.cluster.services(None):
                tenant = (p.raw.get("metadata", {}).get("labels") or {}).get(TENANT_LABEL)
                if tenant and Watch(tenant, p.name) not in out:
                    out.append(Watch(tenant, p.name))
        return out

    return watches


def _parts(
    settings: AnalyticsSettings,
    internal: InternalIdentitySettings,
    *,
    kube_client: KubeClient | None,
    http: httpx.AsyncClient,
    redis: Any,
) -> Analytics:
    """The service's parts, wired; nothing is started."""
    store = open_store(settings)
    parts = Analytics(
        settings=settings,
        store=store,
        costs=Costs(store, settings.prices, horizon_hours=settings.forecast_hours),
        ledger=AiLedger(http, store, url=settings.ai_url, signer=InternalIdentitySigner(internal)),
        orchestrator=Orchestrator(
            store,
            http,
            ai_url=settings.ai_url,
            models=settings.workflow_models,
            prices=settings.ai_prices,
            retries=settings.step_retries,
            analytics=lambda t, f: run_step(t, f),
        ),
        cluster=_kube(settings, kube_client),
    )
    run_step = _analytics_step(parts)
    parts.ingest = EventIngest(
        redis, store, topics=settings.ingest_topics, batch_seconds=settings.ingest_batch_seconds
    )
    if settings.prometheus_url:
        parts.anomalies = AnomalyEngine(
            PrometheusClient(settings.prometheus_url, http),
            store,
            metrics=settings.anomaly_metrics,
            interval=settings.anomaly_interval_seconds,
            resolve_after=settings.anomaly_resolve_after,
            escalate_after=settings.escalate_after_seconds,
            webhooks=settings.alert_webhooks,
            http=http,
            watches=_watches(parts),
        )
    return parts


def _background(parts: Analytics, redis: Any) -> list[asyncio.Task[Any]]:
    """Start ingest, usage sampling, ledger snapshots, the anomaly engine and the dashboard's
    status publisher."""
    every = parts.settings.usage_interval_seconds
    assert parts.ingest is not None
    parts.ingest.start()
    tasks = [asyncio.create_task(periodic("AI ledger", every, parts.ledger.snapshot_all))]
    if parts.cluster is not None:
        sampler = UsageSampler(parts.cluster, parts.store, interval=every)
        tasks.append(asyncio.create_task(sampler.run()))
        tasks.append(asyncio.create_task(StatusPublisher(parts.cluster, redis).run()))
    if parts.anomalies is not None:
        tasks.append(asyncio.create_task(parts.anomalies.run()))
    return tasks


def create_app(
    settings: AnalyticsSettings | None = None,
    *,
    internal_settings: InternalIdentitySettings | None = None,
    kube_client: KubeClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the app; ``kube_client`` and ``transport`` replace the cluster and network (tests)."""
    settings = settings or AnalyticsSettings()
    internal = internal_settings or InternalIdentitySettings()
    configure_logging(settings.log_level)
    http = httpx.AsyncClient(timeout=30, transport=transport)
    redis = aioredis.Redis.from_url(settings.redis_url)
    parts = _parts(settings, internal, kube_client=kube_client, http=http, redis=redis)
    scheduler = build_scheduler(parts, redis, InternalIdentitySigner(internal))
    pubsub = parts.pubsub = pubsub_ingest(settings, parts.store)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await parts.store.open()
        tasks = [*_background(parts, redis), asyncio.create_task(scheduler.run())]
        if pubsub is not None:
            await pubsub.start()
        try:
            yield
        finally:
            await cancel_all(tasks)
            if pubsub is not None:
                await pubsub.stop()
            if parts.ingest is not None:
                await parts.ingest.stop()
            await parts.store.close()
            await http.aclose()
            await redis.aclose()

    app = FastAPI(
        title="Xynergy Analytics", version="0.1.0", lifespan=lifespan, redirect_slashes=False
    )
    state: Any = app.state
    state.settings = settings
    state.analytics = parts
    state.scheduler = scheduler
    state.pubsub = pubsub
    state.identity_verifier = InternalIdentityVerifier(internal)
    install_error_handlers(app)
    for router in (
        costs.router,
        anomalies.router,
        workflows.router,
        scaling.scaling,
        scaling.deployment,
        platform.router,
        schedules.router,
        reports.router,
        security.router,
        dashboard_router,
    ):
        app.include_router(router, responses=_ANSWERS)
    app.mount("/dashboard/static", static_files(), name="dashboard-static")
    health_routes(app, redis=redis, registry=CollectorRegistry(), timeout=2.0)
    return app
