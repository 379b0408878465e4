"""``/api/v1/schedules`` through the real gateway (JWT auth, signed identity) to the analytics
service, with redis-server and the real AI router (fake OpenAI behind it): bad fields are 422
naming the field, editors only write, tenants see only their own; a due schedule runs the
workflow once (ticks driven on the service's scheduler with an injected clock), its success
and its failure are in the run history and on the dashboard, and deleting it drops both."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from ai_router.conftest import INTERNAL, MODEL, serve_router
from fakes.openai import FakeOpenAI

from services.analytics.app import create_app
from services.analytics.schedules import Scheduler
from services.analytics.settings import AnalyticsSettings

from .conftest import GatewayFactory, RedisServer, make_jwt, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ACME, OTHER = "acme-" + uuid.uuid4().hex[:6], "other-" + uuid.uuid4().hex[:6]
API = "/api/v1/schedules"
T0 = dt.datetime(2026, 6, 1, 8, 1, tzinfo=dt.UTC)
DB = 13
"""The service's Redis database in this module: its scheduler sees no other test's schedules."""


def auth(tenant: str, *roles: str) -> dict[str, str]:
    token = make_jwt(tenant_id=tenant, roles=list(roles or ("member",)))
    return {"Authorization": f"Bearer {token}"}


class Clock:
    now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@contextlib.asynccontextmanager
async def stack(
    redis: RedisServer, gateways: GatewayFactory, fake: FakeOpenAI, clock: Clock
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with contextlib.AsyncExitStack() as es:
        router = await es.enter_async_context(serve_router(fake, redis.url))
        settings = AnalyticsSettings(
            redis_url=f"redis://127.0.0.1:{redis.port}/{DB}",
            ai_url=router,
            kubernetes=False,
            workflow_models={"cost": MODEL, "speed": MODEL, "balanced": MODEL},
            log_level="WARNING",
        )
        app = create_app(settings, internal_settings=INTERNAL)
        app.state.scheduler.clock = clock
        url = await es.enter_async_context(serve(app))
        routes = [
            {"prefix": API},
            {"prefix": "/dashboard", "aliases": ["/api/v1/dashboard"]},
        ]
        gw = await es.enter_async_context(
            gateways({"services": [{"name": "analytics", "url": url, "routes": routes}]})
        )
        yield gw.http, app


async def _bad_fields(http: httpx.AsyncClient) -> None:
    good = {"workflow": "analytics_processing", "cron": "*/5 * * * *"}
    for change, field in (
        ({"cron": "every five minutes"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"workflow": "nope"}, "workflow"),
        ({"missed_run_policy": "always"}, "missed_run_policy"),
        ({"workflow": "content_generation"}, "inputs"),
    ):
        r = await http.post(API, json=good | change, headers=auth(ACME, "editor"))
        assert r.status_code == 422, r.text
        assert [f["field"] for f in r.json()["fields"]] == [field], r.text
    r = await http.post(API, json=good, headers=auth(ACME))
    assert r.status_code == 403


async def _create(http: httpx.AsyncClient) -> dict[str, Any]:
    body = {
        "workflow": "analytics_processing",
        "cron": "*/5 * * * *",
        "timezone": "Europe/Berlin",
        "missed_run_policy": "catchUpOnce",
    }
    r = await http.post(API, json=body, headers=auth(ACME, "editor"))
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    assert made["created"] == T0.isoformat().replace("+00:00", "Z")
    listed = (await http.get(API, headers=auth(ACME))).json()["schedules"]
    assert [(s["id"], s["last_run"]) for s in listed] == [(made["id"], None)]
    assert (await http.get(API, headers=auth(OTHER))).json()["schedules"] == []
    sid = made["id"]
    assert (await http.get(f"{API}/{sid}/runs", headers=auth(OTHER))).status_code == 404
    assert (await http.delete(f"{API}/{sid}", headers=auth(OTHER, "editor"))).status_code == 404
    return made


async def _tick(scheduler: Scheduler, clock: Clock, minutes: int) -> None:
    clock.now = T0 + dt.timedelta(minutes=minutes)
    await scheduler.tick()
    await scheduler.tick()  # the same due time again: already claimed
    await scheduler.drain()


async def test_schedules_through_the_gateway(
    redis_server: RedisServer, gateway_factory: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XYNERGY_ANALYTICS_SCHEDULES_ENABLED", "false")  # the test ticks
    clock = Clock()
    with FakeOpenAI(name="openai", api_key="sk-openai") as fake:
        async with stack(redis_server, gateway_factory, fake, clock) as (http, app):
            scheduler: Scheduler = app.state.scheduler
            await _bad_fields(http)
            sid = (await _create(http))["id"]
            await _tick(scheduler, clock, 3)  # 08:04: nothing due yet (08:05 is)
            assert (await http.get(f"{API}/{sid}/runs", headers=auth(ACME))).json()["runs"] == []
            await _tick(scheduler, clock, 4)
            (ok,) = (await http.get(f"{API}/{sid}/runs", headers=auth(ACME))).json()["runs"]
            assert (ok["due"], ok["outcome"], ok["error"]) == (
                "2026-06-01T08:05:00Z",
                "succeeded",
                "",
            )
            stored = await app.state.analytics.store.runs(ACME, workflow="analytics_processing")
            assert [r.run_id for r in stored] == [ok["run_id"]]
            # a second schedule, new prompts (the router's cache answers repeated ones)
            body = {
                "workflow": "content_generation",
                "cron": "*/5 * * * *",
                "inputs": {"topic": "tea " + uuid.uuid4().hex},
            }
            r = await http.post(API, json=body, headers=auth(ACME, "editor"))
            assert r.status_code == 201, r.text
            failing = r.json()["id"]
            fake.sticky("503")
            await _tick(scheduler, clock, 9)
            fake.sticky(None)
            runs = (await http.get(f"{API}/{sid}/runs", headers=auth(ACME))).json()["runs"]
            assert [(r["due"], r["outcome"]) for r in runs] == [
                ("2026-06-01T08:10:00Z", "succeeded"),
                ("2026-06-01T08:05:00Z", "succeeded"),
            ]
            (bad,) = (await http.get(f"{API}/{failing}/runs", headers=auth(ACME))).json()["runs"]
            assert (bad["due"], bad["outcome"]) == ("2026-06-01T08:10:00Z", "failed")
            assert "step research failed" in bad["error"]
            listed = (await http.get(API, headers=auth(ACME))).json()["schedules"]
            assert [s["last_run"]["outcome"] for s in listed] == ["succeeded", "failed"]
            page = await http.get("/api/v1/dashboard/panels", headers=auth(ACME))
            assert page.status_code == 200, page.text
            assert f'data-schedule="{sid}"' in page.text
            assert 'class="outcome o-failed"' in page.text
            for gone in (sid, failing):
                r = await http.delete(f"{API}/{gone}", headers=auth(ACME, "editor"))
                assert r.status_code == 204
            assert (await http.get(API, headers=auth(ACME))).json()["schedules"] == []
            assert (await http.get(f"{API}/{sid}/runs", headers=auth(ACME))).status_code == 404
