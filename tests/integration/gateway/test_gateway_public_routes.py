"""Routes without a token (Slack's Events API webhook) and the OAuth callback behind the
proxy's limits, through the real gateway, redis-server and upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from services.gateway.routing import Route, RouteTable

from .conftest import RedisServer, Upstream


@dataclass(frozen=True, slots=True)
class PublicRoute(Route):
    """A route as the table carries ``spec.routes[].public``."""

    public: bool = True


class StaticRoutes:
    def __init__(self, routes: list[Route]) -> None:
        self.table = RouteTable.build(routes)

    async def watch(self) -> AsyncIterator[RouteTable]:
        yield self.table
        await asyncio.Event().wait()


def slack_routes(upstream: Upstream) -> StaticRoutes:
    return StaticRoutes(
        [
            Route("/api/v2/slack", upstream.url, "slack"),
            PublicRoute("/api/v2/slack/events", upstream.url, "slack", rate_limit_per_minute=3),
        ]
    )


async def test_a_public_route_needs_no_token_and_never_forwards_an_identity(
    gateway_factory: Any, own_redis: RedisServer, upstream: Upstream, auth: Any
) -> None:
    routes = slack_routes(upstream)
    async with gateway_factory(redis_url=own_redis.url, route_source=routes) as gw:
        forged = {"X-Xynergy-Identity": "forged", "X-Tenant-Id": "acme"}
        for i, headers in enumerate([forged, auth(), {}]):
            r = await gw.http.post("/api/v2/slack/events", json={"type": "event"}, headers=headers)
            assert r.status_code == 200, r.text
            seen = r.json()
            assert seen["path"] == "/api/v2/slack/events"
            assert "x-xynergy-identity" not in seen["headers"]  # neither forged nor signed
            assert "x-tenant-id" not in seen["headers"]
            assert "authorization" not in seen["headers"]
            assert r.headers["ratelimit-policy"] == "3;w=60"
            assert r.headers["ratelimit-remaining"] == str(2 - i)
            assert "x-cache" not in r.headers
        r = await gw.http.post("/api/v2/slack/events", json={"type": "event"})
        assert r.status_code == 429
        assert r.json()["limit"] == "public"
        # the rest of the service still asks for a token
        r = await gw.http.get("/api/v2/slack/channels")
        assert r.status_code == 401
        assert (await gw.http.get("/api/v2/slack/channels", headers=auth())).status_code == 200


async def test_a_public_route_keeps_the_body_limit(
    gateway_factory: Any, own_redis: RedisServer, upstream: Upstream
) -> None:
    routes = slack_routes(upstream)
    async with gateway_factory(redis_url=own_redis.url, route_source=routes) as gw:
        r = await gw.http.post("/api/v2/slack/events", content=b"x" * ((1 << 20) + 1))
        assert r.status_code == 413
        assert r.json()["error"] == "too_large"


async def test_the_oauth_callback_is_behind_the_limits(
    gateway_factory: Any, own_redis: RedisServer, auth: Any
) -> None:
    async with gateway_factory(
        redis_url=own_redis.url, unauthenticated_rate_limit=2, rate_limit_per_minute=3
    ) as gw:
        url = "/api/v2/oauth/slack/callback"
        for _ in range(2):
            r = await gw.http.get(url)
            assert r.status_code == 401
            assert r.headers["ratelimit-policy"] == "2;w=900"
        r = await gw.http.get(url)
        assert r.status_code == 429
        assert r.json()["limit"] == "unauthenticated"
        # a signed-in caller is limited per user on the callback's route
        headers = auth(user_id="oauth-user")
        for i in range(3):
            r = await gw.http.get(url, headers=headers)  # no state: the callback's own 400
            assert r.status_code == 400, r.text
            assert r.headers["ratelimit-remaining"] == str(2 - i)
            assert r.headers["x-request-id"]
        r = await gw.http.get(url, headers=headers)
        assert r.status_code == 429
        assert r.json()["limit"] == "user"
