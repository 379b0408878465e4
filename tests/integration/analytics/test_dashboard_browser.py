"""The Platform Dashboard in a real browser: headless Chromium (Debian's ``chromium``, driven by
Selenium through Debian's ``chromium-driver``; hack/deps/chromium.sh) opens the page through
the real gateway with a platform JWT, as a frontend would hand it over (URL fragment). Real
kube-apiserver with the CRDs, redis-server (the bus), the analytics service and the gateway's
socket.io stream. The page shows the tenant's services, draws the ScalingPolicy's forecast
band and points, and a status change patched through the Kubernetes API (what ``kubectl patch
--subresource=status`` sends) appears without a reload. A screenshot is saved in tmp_path."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway.conftest import FIREBASE_PROJECT, INTERNAL_KEY, JWT_SECRET, free_port
from kube_support import Kube
from lightkube import AsyncClient, KubeConfig

from services.analytics.app import create_app as create_analytics
from services.analytics.settings import AnalyticsSettings
from services.common.settings import AuthSettings, InternalIdentitySettings
from services.gateway.app import create_app as create_gateway
from services.gateway.routing import Route, RouteTable
from services.gateway.settings import GatewaySettings

from .conftest import RedisServer, make_jwt, serve, wait_for

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")),
        reason="needs Debian's chromium and chromium-driver (hack/deps/chromium.sh)",
    ),
]

GROUP = "/apis/xynergy.io/v1alpha1"
ACME = "acme-" + uuid.uuid4().hex[:6]
INTERNAL = InternalIdentitySettings(signing_key=INTERNAL_KEY)  # type: ignore[arg-type]
FORECAST = [10.0, 14.0, 19.0, 23.0, 21.0, 16.0]


@dataclass(frozen=True)
class PublicRoute(Route):
    """A route marked ``public`` (the API's ``spec.routes[].public``): the proxy reads the
    flag (``services.gateway.proxy.is_public``); the gateway's route table does not carry it
    yet, so this test's route source does."""

    public: bool = False


class FixedRoutes:
    def __init__(self, routes: list[Route]) -> None:
        self.table = RouteTable.build(routes)

    async def watch(self) -> AsyncIterator[RouteTable]:
        yield self.table
        await asyncio.Event().wait()


def _routes(analytics: str) -> list[Route]:
    return [
        # the page and its static files carry no data: public, like a frontend's bundle
        PublicRoute("/dashboard", analytics, "analytics", ("/api/v1/dashboard",), public=True),
        # the panels are the tenant's data: authenticated like every other endpoint
        Route("/dashboard/panels", analytics, "analytics", ("/api/v1/dashboard/panels",)),
    ]


@contextlib.asynccontextmanager
async def platform(redis: RedisServer, kubeconfig: Path) -> AsyncIterator[str]:
    """Analytics behind a gateway whose stream carries platform-status; the gateway's URL."""
    settings = AnalyticsSettings(
        redis_url=redis.url, usage_interval_seconds=1, ingest_batch_seconds=0.1, log_level="WARNING"
    )
    kube = AsyncClient(config=KubeConfig.from_file(str(kubeconfig)))
    analytics = create_analytics(settings, internal_settings=INTERNAL, kube_client=kube)  # type: ignore[arg-type]
    port = free_port()
    origin = f"http://127.0.0.1:{port}"  # the page's own origin opens the websocket
    async with serve(analytics) as analytics_url:
        gateway = create_gateway(
            GatewaySettings(
                redis_url=redis.url,
                cors_origins=[origin],
                stream_topics=["platform-status", "anomaly-alerts"],
                log_level="WARNING",
            ),
            auth_settings=AuthSettings(
                jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
                firebase_project_id=FIREBASE_PROJECT,
            ),
            internal_settings=INTERNAL,
            route_source=FixedRoutes(_routes(analytics_url)),
        )
        async with serve(gateway, port, http="httptools") as url:
            await wait_for(gateway.stream_ready.wait, within=20, what="the gateway's stream")
            yield url


def _objects(ns: str) -> list[tuple[str, dict[str, Any]]]:
    meta = {"name": "crm", "namespace": ns, "labels": {"xynergy.io/tenant": ACME}}
    service = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": meta,
        "spec": {"image": "registry.example/crm:1", "scaling": {"minInstances": 1}},
    }
    policy = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": meta,
        "spec": {
            "targetRef": {"name": "crm"},
            "mode": "predictive",
            "maxInstances": 6,
            "metric": {"source": "prometheus", "query": "sum(up)", "targetPerInstance": 5},
        },
    }
    rollout = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {**meta, "name": "crm-v2"},
        "spec": {
            "targetRef": {"kind": "XynergyService", "name": "crm"},
            "image": "registry.example/crm:2",
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"setWeight": 100}]}},
        },
    }
    return [("xynergyservices", service), ("scalingpolicies", policy), ("rollouts", rollout)]


def _statuses() -> dict[str, dict[str, Any]]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "2/2 ready",
        "lastTransitionTime": now.isoformat().replace("+00:00", "Z"),
    }
    forecast = [
        {
            "time": (now + dt.timedelta(minutes=5 * i)).isoformat().replace("+00:00", "Z"),
            "value": v,
            "lower": v * 0.8,
            "upper": v * 1.25,
        }
        for i, v in enumerate(FORECAST)
    ]
    return {
        "xynergyservices/crm": {"replicas": 2, "readyReplicas": 2, "conditions": [ready]},
        "scalingpolicies/crm": {
            "currentInstances": 2,
            "desiredInstances": 3,
            "currentLoad": 12.0,
            "forecast": forecast,
            "model": "ridge-seasonal",
            "conditions": [ready],
        },
        "rollouts/crm-v2": {
            "phase": "Progressing",
            "currentStepIndex": 1,
            "canaryWeight": 20,
            "analysisRuns": [
                {"stepIndex": 0, "time": forecast[0]["time"], "verdict": "Successful"}
            ],
        },
    }


def _patch_status(kube: Kube, path: str, status: dict[str, Any]) -> None:
    """What `kubectl patch --subresource=status --type=merge` sends."""
    r = kube.http.patch(
        f"{path}/status",
        json={"status": status},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


async def _until(driver: Any, script: str, *, within: float, what: str) -> Any:
    """Wait until ``script`` (a JS expression) is truthy in the page; its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    def wait() -> Any:
        return WebDriverWait(driver, within, poll_frequency=0.1).until(
            lambda d: d.execute_script(f"return {script}"), message=what
        )

    return await asyncio.to_thread(wait)


async def test_the_dashboard_shows_the_platform_and_updates_live(
    redis_server: RedisServer,
    cluster: Path,
    kube: Kube,
    crds_installed: list[str],
    namespace: str,
    browser: Any,
    tmp_path: Path,
) -> None:
    ns = f"{GROUP}/namespaces/{namespace}"
    for plural, body in _objects(namespace):
        r = kube.create(f"{ns}/{plural}", body)
        assert r.status_code == 201, r.text
    for path, status in _statuses().items():
        _patch_status(kube, f"{ns}/{path}", status)

    async with platform(redis_server, cluster) as url:
        # the panels are not public: without a token the gateway refuses them
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/api/v1/dashboard/panels")).status_code == 401
        token = make_jwt(tenant_id=ACME)
        await asyncio.to_thread(browser.get, f"{url}/api/v1/dashboard#token={token}")

        # the services of the running platform, healthy; the rollout's step and verdict
        await _until(
            browser,
            "document.querySelector('#services .name')?.textContent === 'crm' && "
            "document.querySelector('#services .health')?.dataset.ready === 'True'",
            within=30,
            what="crm shown Ready",
        )
        rollouts = await _until(
            browser, "document.querySelector('#rollouts tbody')?.innerText", within=5, what="rows"
        )
        assert "crm-v2" in rollouts
        assert "Progressing" in rollouts
        assert "Successful" in rollouts
        # the forecast plot: one data point per forecast value, and the band
        points = await _until(
            browser,
            "[...document.querySelectorAll('svg.plot.scaling circle.pt')]"
            ".map(c => Number(c.dataset.value))",
            within=5,
            what="forecast points",
        )
        assert points == FORECAST
        assert await asyncio.to_thread(
            browser.execute_script, "return !!document.querySelector('svg.plot polygon.band')"
        )
        # the token left the address bar; the stream subscribed
        assert "token=" not in await asyncio.to_thread(lambda: browser.current_url)
        await _until(
            browser,
            "document.body.dataset.subscribed === 'platform-status,anomaly-alerts'",
            within=20,
            what="the stream subscription",
        )

        # a status change through the Kubernetes API appears without a reload
        await asyncio.to_thread(browser.execute_script, "window.__sameDocument = true")
        failing = _statuses()["xynergyservices/crm"]
        failing["conditions"][0].update(
            status="False", reason="ProgressDeadlineExceeded", message="stuck"
        )
        _patch_status(kube, f"{ns}/xynergyservices/crm", failing)
        await _until(
            browser,
            "document.querySelector('#services .health')?.dataset.ready === 'False'",
            within=20,
            what="crm shown not Ready",
        )
        assert await asyncio.to_thread(browser.execute_script, "return window.__sameDocument")
        shot = tmp_path / "dashboard.png"
        await asyncio.to_thread(browser.save_screenshot, str(shot))
        assert shot.stat().st_size > 0
