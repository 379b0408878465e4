"""The gateway's /readyz: what a Kubernetes readiness probe on it takes a replica out for."""

from __future__ import annotations

import httpx
import pytest

from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once


class Verifier:
    async def verify(self, token: str) -> Identity:
        return Identity(user_id="u1", tenant_id="acme")


class NoRoutes:
    async def watch(self):  # type: ignore[no-untyped-def]  # never yields: no table yet
        return
        yield


async def _readyz(*, fail_open: bool, loaded: bool) -> httpx.Response:
    gateway = create_app(
        GatewaySettings(redis_url=DEAD_REDIS, rate_limit_fail_open=fail_open),
        internal_settings=InternalIdentitySettings(signing_key="k" * 32),  # type: ignore[arg-type]
        verifier=Verifier(),
        route_source=NoRoutes(),
    )
    gateway.routes.loaded = loaded
    transport = httpx.ASGITransport(app=gateway.api)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.get("/readyz")
    finally:
        await gateway.redis.aclose()


@pytest.mark.parametrize(("fail_open", "status"), [(True, 200), (False, 503)])
async def test_readiness_needs_redis_only_when_rate_limiting_fails_closed(
    fail_open: bool, status: int
) -> None:
    """Failing open, requests are served without Redis, so a Redis outage must not make every
    replica unready (the sample probes /readyz); failing closed, they are refused anyway."""
    r = await _readyz(fail_open=fail_open, loaded=True)
    assert r.status_code == status, r.text
    assert r.json()["checks"]["redis"] == "unreachable"


@pytest.mark.parametrize("fail_open", [True, False])
async def test_readiness_needs_a_route_table(fail_open: bool) -> None:
    r = await _readyz(fail_open=fail_open, loaded=False)
    assert r.status_code == 503
    assert r.json()["checks"]["routes"]["loaded"] is False
