"""Every endpoint of the analytics contract through the real gateway (JWT auth, signed
identity), with real redis-server (the event bus), the real AI router (fake OpenAI behind
it), a real kube-apiserver with the CRDs (XynergyServices, ScalingPolicies, Rollouts labelled
per tenant) and a real Prometheus. Two tenants: neither sees the other's data."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from ai_router.conftest import INTERNAL, MODEL, serve_router
from fakes.openai import FakeOpenAI
from kube_support import Kube
from lightkube import AsyncClient, KubeConfig
from prometheus import PrometheusServer

from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from services.common.events import publish_event

from .conftest import GatewayFactory, RedisServer, make_jwt, serve, wait_for

GROUP = "/apis/xynergy.io/v1alpha1"
ACME, OTHER = "acme-" + uuid.uuid4().hex[:6], "other-" + uuid.uuid4().hex[:6]

GETS = [
    "/phase3/complete-dashboard",
    "/phase3/workflow/orchestration-dashboard",
    "/phase3/cost-intelligence/dashboard",
    "/phase3/cost-intelligence/forecast/crm",
    "/phase3/cost-intelligence/anomalies",
    "/phase3/scaling/dashboard",
    "/phase3/anomaly-detection/dashboard",
    "/phase3/deployment/dashboard",
    "/bigquery/optimization-summary",
    "/pubsub/consolidation-metrics",
    "/container/optimization-summary",
    "/monitoring/platform-dashboard",
]
ROUTES = ["/phase3", "/bigquery", "/pubsub", "/container", "/monitoring"]
GW = "/api/v1"
"""The gateway proxies only /api/... paths: each contract prefix is routed with the alias
/api/v1<prefix>, which the gateway rewrites to the contract path upstream."""


def auth(tenant: str, *roles: str) -> dict[str, str]:
    token = make_jwt(tenant_id=tenant, roles=list(roles or ("member",)))
    return {"Authorization": f"Bearer {token}"}


def _service(name: str, tenant: str) -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": name, "labels": {"xynergy.io/tenant": tenant}},
        "spec": {
            "image": "registry.example/crm:1",
            "profile": "api-service",
            "scaling": {"minInstances": 1, "maxInstances": 5},
        },
    }


def _policy(target: str, tenant: str) -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": target, "labels": {"xynergy.io/tenant": tenant}},
        "spec": {
            "targetRef": {"name": target},
            "mode": "reactive",
            "minInstances": 1,
            "maxInstances": 4,
            "metric": {"source": "prometheus", "query": "sum(up)", "targetPerInstance": 50},
        },
    }


@contextlib.asynccontextmanager
async def stack(
    redis: RedisServer, gateways: GatewayFactory, kubeconfig: Path, prometheus_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    fake = FakeOpenAI(name="openai", api_key="sk-openai")
    with fake:
        async with contextlib.AsyncExitStack() as es:
            router = await es.enter_async_context(serve_router(fake, redis.url))
            settings = AnalyticsSettings(
                redis_url=redis.url,
                ai_url=router,
                prometheus_url=prometheus_url,
                usage_interval_seconds=0.5,
                ingest_batch_seconds=0.1,
                anomaly_interval_seconds=1,
                workflow_models={"cost": MODEL, "speed": MODEL, "balanced": MODEL},
                log_level="WARNING",
            )
            kube = AsyncClient(config=KubeConfig.from_file(str(kubeconfig)))
            app = create_app(settings, internal_settings=INTERNAL, kube_client=kube)  # type: ignore[arg-type]
            url = await es.enter_async_context(serve(app))
            services = [
                {
                    "name": "analytics",
                    "url": url,
                    "routes": [
                        {"prefix": p, "aliases": [GW + p], "timeoutSeconds": 60} for p in ROUTES
                    ],
                },
                {"name": "ai", "url": router, "routes": [{"prefix": "/api/v1/ai"}]},
            ]
            gw = await es.enter_async_context(gateways({"services": services}))
            yield gw.http


async def _ingest(http: httpx.AsyncClient, bus: aioredis.Redis) -> None:
    # platform events flow in from the bus, per tenant
    async def subscribed() -> bool:
        r = await http.get(GW + "/pubsub/consolidation-metrics", headers=auth(ACME))
        return bool(r.json()["subscribed"])

    await wait_for(subscribed, within=20, what="the ingest subscription")
    await publish_event(bus, tenant_id=ACME, topic="crm-changes", payload={"op": "create"})
    await publish_event(bus, tenant_id=ACME, topic="crm-changes", payload={"op": "update"})
    await publish_event(bus, tenant_id=OTHER, topic="slack-messages", payload={"text": "hi"})

    async def ingested() -> bool:
        r = await http.get(GW + "/pubsub/consolidation-metrics", headers=auth(ACME))
        other = await http.get(GW + "/pubsub/consolidation-metrics", headers=auth(OTHER))
        return bool(
            r.json()["events_24h"].get("crm-changes") == 2
            and other.json()["events_24h"].get("slack-messages")
        )

    # all three are in (the other tenant's came last: waiting for acme's alone raced it)
    await wait_for(ingested, within=20, what="the three events ingested")
    r = await http.get(GW + "/pubsub/consolidation-metrics", headers=auth(ACME))
    assert r.json()["events_24h"] == {"crm-changes": 2}
    r = await http.get(GW + "/pubsub/consolidation-metrics", headers=auth(OTHER))
    assert r.json()["events_24h"] == {"slack-messages": 1}


async def _reads(http: httpx.AsyncClient) -> None:
    # unauthenticated: refused by the gateway
    for path in GETS:
        assert (await http.get(GW + path)).status_code == 401, path

    # usage sampled from the cluster: crm has 2 ready instances, so it costs something
    async def costed() -> bool:
        r = await http.get(GW + "/phase3/cost-intelligence/dashboard", headers=auth(ACME))
        return any(s["service"] == "crm" and s["cost_usd"] > 0 for s in r.json()["services"])

    await wait_for(costed, within=20, what="crm's cost")

    # every GET answers for both tenants; nothing of one appears in the other's answers
    for path in GETS:
        a = await http.get(GW + path, headers=auth(ACME))
        o = await http.get(GW + path, headers=auth(OTHER))
        assert a.status_code == 200, (path, a.text)
        assert o.status_code == 200, (path, o.text)
        assert a.json().get("tenant", ACME) == ACME
        assert ACME not in o.text, path
        assert OTHER not in a.text, path

    full = (await http.get(GW + "/phase3/complete-dashboard", headers=auth(ACME))).json()
    assert [s["name"] for s in full["services"]] == ["crm"]
    assert full["services"][0]["ready_replicas"] == 2
    assert [p["target"] for p in full["scaling"]] == ["crm"]
    forecast = (
        await http.get(GW + "/phase3/cost-intelligence/forecast/crm", headers=auth(ACME))
    ).json()
    assert forecast["forecast"]
    assert forecast["forecast"][0]["cost_usd"] > 0
    bq = (await http.get(GW + "/bigquery/optimization-summary", headers=auth(ACME))).json()
    assert {t["name"] for t in bq["tables"]} >= {"usage", "events", "ai_usage", "workflow_runs"}


async def _analyze_and_detect(http: httpx.AsyncClient) -> None:
    # analyze: the tenant's policy; another tenant's service is not found
    r = await http.post(GW + "/phase3/scaling/analyze/crm", headers=auth(ACME))
    assert r.status_code == 200, r.text
    assert r.json()["policy"]["max_instances"] == 4
    assert (
        await http.post(GW + "/phase3/scaling/analyze/crm", headers=auth(OTHER))
    ).status_code == 404

    # detect on demand: watched services of the tenant only
    r = await http.post(GW + "/phase3/anomaly-detection/detect/crm", headers=auth(ACME))
    assert r.status_code == 200, r.text
    assert {m["metric"] for m in r.json()["metrics"]} == {"request_rate", "error_rate"}
    assert (
        await http.post(GW + "/phase3/anomaly-detection/detect/crm", headers=auth(OTHER))
    ).status_code == 404


async def _workflow(http: httpx.AsyncClient) -> None:
    # workflow: editors only; the run and each step's cost are recorded
    body = {"goal": "speed", "inputs": {"topic": "tea"}}
    r = await http.post(
        GW + "/phase3/workflow/execute/content_generation", json=body, headers=auth(ACME)
    )
    assert r.status_code == 403
    r = await http.post(
        GW + "/phase3/workflow/execute/content_generation",
        json=body,
        headers=auth(ACME, "editor"),
    )
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["status"] == "succeeded"
    assert all(s["tokens"] > 0 and s["cost_usd"] > 0 for s in run["steps"])
    dash = (
        await http.get(GW + "/phase3/workflow/orchestration-dashboard", headers=auth(ACME))
    ).json()
    assert [x["run_id"] for x in dash["recent_runs"]] == [run["run_id"]]
    dash = (
        await http.get(GW + "/phase3/workflow/orchestration-dashboard", headers=auth(OTHER))
    ).json()
    assert dash["recent_runs"] == []
    r = await http.post(
        GW + "/phase3/workflow/execute/nope", json=body, headers=auth(ACME, "editor")
    )
    assert r.status_code == 404


async def _deploy(http: httpx.AsyncClient, kube: Kube, ns: str) -> None:
    # deploy: a Rollout of the tenant's service, labelled with the tenant
    r = await http.post(
        GW + "/phase3/deployment/deploy/crm",
        json={"image": "registry.example/crm:2"},
        headers=auth(ACME, "editor"),
    )
    assert r.status_code == 201, r.text
    name = r.json()["name"]
    got = kube.get(f"{GROUP}{ns}/rollouts/{name}").json()
    assert got["metadata"]["labels"]["xynergy.io/tenant"] == ACME
    assert got["spec"]["targetRef"]["name"] == "crm"
    r = await http.post(
        GW + "/phase3/deployment/deploy/crm",
        json={"image": "x:2"},
        headers=auth(OTHER, "editor"),
    )
    assert r.status_code == 404
    rollouts = (await http.get(GW + "/phase3/deployment/dashboard", headers=auth(ACME))).json()[
        "rollouts"
    ]
    assert [x["name"] for x in rollouts] == [name]
    assert (await http.get(GW + "/phase3/deployment/dashboard", headers=auth(OTHER))).json()[
        "rollouts"
    ] == []


async def test_every_endpoint_through_the_gateway_per_tenant(
    redis_server: RedisServer,
    gateway_factory: GatewayFactory,
    cluster: Path,
    kube: Kube,
    crds_installed: list[str],
    namespace: str,
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    ns = f"/namespaces/{namespace}"
    for body in (_service("crm", ACME), _service("billing", OTHER), _policy("crm", ACME)):
        plural = "xynergyservices" if body["kind"] == "XynergyService" else "scalingpolicies"
        r = kube.create(f"{GROUP}{ns}/{plural}", body)
        assert r.status_code == 201, r.text
    r = kube.http.patch(
        f"{GROUP}{ns}/xynergyservices/crm/status",
        json={"status": {"replicas": 2, "readyReplicas": 2}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
    prom = prometheus_factory()
    bus = aioredis.Redis.from_url(redis_server.url)
    async with stack(redis_server, gateway_factory, cluster, prom.url) as http:
        await _ingest(http, bus)
        await _reads(http)
        await _analyze_and_detect(http)
        await _workflow(http)
        await _deploy(http, kube, ns)


pytestmark = pytest.mark.timeout(300)
