"""Health, readiness, metrics, OpenAPI and the crm-changes events published to Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import redis.asyncio as aioredis

from services.common.events import channel_for

from .conftest import ClientFactory, RunningCrm


async def test_health_readiness_metrics_openapi(crm: RunningCrm) -> None:
    async with httpx.AsyncClient(base_url=crm.url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"firestore": "ok"}}
        await http.get("/api/v2/crm/contacts")  # 401, still counted
        metrics = (await http.get("/metrics")).text
        assert (
            'xynergy_crm_requests_total{method="GET",route="/api/v2/crm/contacts",status="401"}'
            in metrics
        )
        spec = (await http.get("/openapi.json")).json()
        create = spec["paths"]["/api/v2/crm/contacts"]["post"]
        params = {p["name"] for p in create["parameters"]}
        assert "Idempotency-Key" in params
        schema = spec["components"]["schemas"]["ContactCreate"]
        assert schema["examples"][0]["email"] == "ada@analytical.example"
        assert schema["additionalProperties"] is False


async def test_readiness_fails_when_firestore_is_unreachable(
    monkeypatch: Any, redis_server: Any
) -> None:
    from gateway.conftest import free_port, serve

    from services.crm.app import create_app
    from services.crm.settings import CrmSettings

    from .conftest import INTERNAL

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    app = create_app(
        CrmSettings(redis_url=None, log_level="WARNING", readiness_timeout_seconds=0.5),
        internal_settings=INTERNAL,
    )
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        r = await http.get("/readyz")
        assert r.status_code == 503
        assert r.json()["status"] == "not_ready"
        assert r.json()["checks"]["firestore"].startswith("unreachable")


async def test_changes_are_published_for_the_tenant(
    client_for: ClientFactory, tenant: str, redis_client: aioredis.Redis
) -> None:
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(channel_for(tenant, "crm-changes"))
    await pubsub.get_message(timeout=5)  # the subscribe confirmation

    async def next_event() -> dict[str, Any]:
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
            if msg is not None:
                return dict(json.loads(msg["data"]))

    c = client_for(tenant)
    key = {"Idempotency-Key": "evt-1"}
    made = (await c.post("/contacts", json={"name": "Ada"}, headers=key)).json()
    await c.post("/contacts", json={"name": "Ada"}, headers=key)  # replay: no event
    await c.patch(f"/contacts/{made['id']}", json={"title": "CTO"})
    await c.patch(f"/contacts/{made['id']}", json={"title": "CTO"})  # no change: no event
    task = (await c.post(f"/contacts/{made['id']}/tasks", json={"title": "t"})).json()
    await c.delete(f"/contacts/{made['id']}")
    await c.post(f"/contacts/{made['id']}/restore")

    try:
        got = [await asyncio.wait_for(next_event(), timeout=10) for _ in range(5)]
    finally:
        await pubsub.aclose()
    assert [(e["kind"], e["id"], e["action"]) for e in got] == [
        ("contact", made["id"], "created"),
        ("contact", made["id"], "updated"),
        ("task", task["id"], "created"),
        ("contact", made["id"], "deleted"),
        ("contact", made["id"], "restored"),
    ]
    assert {e["tenant"] for e in got} == {tenant}
    assert got[2]["contact_id"] == made["id"]
