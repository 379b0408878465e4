"""Cache, rate limit and circuit breaker through the running gateway, against real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.common.tenancy import Identity
from services.gateway.app import rate_limit_policies
from services.gateway.cors import OriginPolicy
from services.gateway.metrics import GatewayMetrics
from services.gateway.ratelimit import Limit, RateLimiter
from services.gateway.settings import GatewaySettings
from services.gateway.stream import EventStream

from .conftest import RedisServer, RunningGateway, Upstream, make_jwt, wait_for


async def test_cache_hit_miss_and_tenant_isolation(
    gateway: RunningGateway, upstream: Upstream, auth: Any
) -> None:
    path = "/api/v2/crm/reports?cache=public&b=2&a=1"
    a1 = await gateway.http.get(path, headers=auth(user_id="alice", tenant_id="tenant-a"))
    assert a1.headers["x-cache"] == "MISS"
    a2 = await gateway.http.get(
        "/api/v2/crm/reports?a=1&cache=public&b=2",  # same query, another order
        headers=auth(user_id="alice2", tenant_id="tenant-a"),
    )
    assert a2.headers["x-cache"] == "HIT"  # public: shared within the tenant
    assert a2.json() == a1.json()
    b1 = await gateway.http.get(path, headers=auth(user_id="bob", tenant_id="tenant-b"))
    assert b1.headers["x-cache"] == "MISS"  # never another tenant's entry
    assert b1.json()["identity"]["tenant"] == "tenant-b"
    assert b1.json()["hit"] == a1.json()["hit"] + 1


async def test_private_responses_are_per_user(gateway: RunningGateway, auth: Any) -> None:
    path = "/api/v2/crm/me?cache=private"
    r = await gateway.http.get(path, headers=auth(user_id="carol", tenant_id="tenant-a"))
    assert r.headers["x-cache"] == "MISS"
    r = await gateway.http.get(path, headers=auth(user_id="carol", tenant_id="tenant-a"))
    assert r.headers["x-cache"] == "HIT"
    assert r.json()["identity"]["user"] == "carol"
    r = await gateway.http.get(path, headers=auth(user_id="dave", tenant_id="tenant-a"))
    assert r.headers["x-cache"] == "MISS"
    assert r.json()["identity"]["user"] == "dave"


async def test_uncacheable_responses_are_not_cached(gateway: RunningGateway, auth: Any) -> None:
    for _ in range(2):
        r = await gateway.http.get("/api/v2/crm/live", headers=auth())
        assert r.headers["x-cache"] == "MISS"


async def test_writes_invalidate_the_resource_for_the_tenant_only(
    gateway: RunningGateway, auth: Any
) -> None:
    a, b = auth(user_id="erin", tenant_id="tenant-a"), auth(user_id="frank", tenant_id="tenant-b")
    path = "/api/v2/crm/contacts/7?cache=public"
    for h in (a, b):
        await gateway.http.get(path, headers=h)
        assert (await gateway.http.get(path, headers=h)).headers["x-cache"] == "HIT"
    r = await gateway.http.post("/api/v2/crm/contacts", headers=a, json={"name": "x"})
    assert r.status_code == 200
    assert (await gateway.http.get(path, headers=a)).headers["x-cache"] == "MISS"
    assert (await gateway.http.get(path, headers=b)).headers["x-cache"] == "HIT"
    # another resource of the same tenant is untouched by that write
    other = "/api/v2/crm/deals?cache=public"
    await gateway.http.get(other, headers=a)
    await gateway.http.put("/api/v2/crm/contacts/7", headers=a, json={})
    assert (await gateway.http.get(other, headers=a)).headers["x-cache"] == "HIT"


async def test_hundred_and_first_request_is_429(gateway: RunningGateway, auth: Any) -> None:
    headers = auth(user_id="rl-user", tenant_id="acme")
    for i in range(100):
        r = await gateway.http.get("/api/v2/slack/channels", headers=headers)
        assert r.status_code == 200, i
        assert r.headers["ratelimit-limit"] == "100"
        assert r.headers["ratelimit-remaining"] == str(99 - i)
    r = await gateway.http.get("/api/v2/slack/channels", headers=headers)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["ratelimit-remaining"] == "0"
    assert r.json()["error"] == "rate_limited"
    # another user is not affected
    other = await gateway.http.get("/api/v2/slack/channels", headers=auth(user_id="rl-other"))
    assert other.status_code == 200
    assert "xynergy_gateway_rate_limited_total" in (await gateway.http.get("/metrics")).text


async def test_requests_recover_after_the_window(gateway_factory: Any, auth: Any) -> None:
    async with gateway_factory(rate_limit_per_minute=3, rate_limit_window_seconds=1) as gw:
        headers = auth(user_id="recovering")
        statuses = [(await gw.http.get("/api/v2/crm/x", headers=headers)).status_code]
        while statuses[-1] == 200 and len(statuses) < 10:
            statuses.append((await gw.http.get("/api/v2/crm/x", headers=headers)).status_code)
        assert statuses[-1] == 429
        assert statuses.count(200) <= 3

        async def recovered() -> bool:
            return (await gw.http.get("/api/v2/crm/x", headers=headers)).status_code == 200

        await wait_for(recovered, within=10, what="the rate limit window to pass", interval=0.1)


async def test_rate_limiter_fails_open_or_closed_without_redis(
    auth: Any, gateway_factory: Any
) -> None:
    from .conftest import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    for fail_open, expected in ((True, 200), (False, 503)):
        async with gateway_factory(
            redis_url=dead, rate_limit_fail_open=fail_open, wait_ready=False
        ) as gw:
            # ready without Redis only when it serves without Redis (fail open)
            assert (await gw.http.get("/readyz")).status_code == expected
            r = await gw.http.get("/api/v2/crm/x", headers=auth(user_id="no-redis"))
            assert r.status_code == expected
            metrics = (await gw.http.get("/metrics")).text
            assert 'xynergy_gateway_redis_errors_total{component="ratelimit"} 1.0' in metrics


async def test_breaker_opens_fails_fast_half_opens_and_closes(
    gateway_factory: Any, upstream: Upstream, auth: Any
) -> None:
    async with gateway_factory(
        breaker_failure_threshold=3, breaker_reset_seconds=0.5, retries=0
    ) as gw:
        headers = auth(user_id="breaker-user")
        upstream.fail_next["/api/v2/flaky/b"] = 3
        for _ in range(3):
            r = await gw.http.get("/api/v2/flaky/b", headers=headers)
            assert r.status_code == 503
            assert r.json()["error"] == "failing on purpose"
        before = upstream.hits["/api/v2/flaky/b"]
        r = await gw.http.get("/api/v2/flaky/b", headers=headers)
        assert r.status_code == 503
        assert r.json()["error"] == "upstream_unavailable"
        assert int(r.headers["retry-after"]) >= 1
        assert upstream.hits["/api/v2/flaky/b"] == before  # failed fast, nothing sent
        ready = (await gw.http.get("/readyz")).json()
        assert ready["breakers"] == {upstream.url: "open"}
        assert "xynergy_gateway_breaker_state" in (await gw.http.get("/metrics")).text

        async def half_open() -> bool:
            return (await gw.http.get("/readyz")).json()["breakers"][upstream.url] == "half_open"

        await wait_for(half_open, within=10, what="the breaker to half-open")
        r = await gw.http.get("/api/v2/flaky/b", headers=headers)
        assert r.status_code == 200
        assert (await gw.http.get("/readyz")).json()["breakers"][upstream.url] == "closed"


# -- limits per address and per tenant (issue 20 item 7) --------------------------------------


def _bad_token() -> dict[str, str]:
    return {"Authorization": "Bearer " + make_jwt(secret="not-the-secret" * 4)}


async def test_unauthenticated_requests_are_limited_per_address(
    gateway_factory: Any, own_redis: RedisServer, auth: Any
) -> None:
    async with gateway_factory(redis_url=own_redis.url, unauthenticated_rate_limit=5) as gw:
        for i in range(5):
            headers = _bad_token() if i % 2 else {}  # bad and missing tokens both count
            r = await gw.http.get("/api/v2/crm/x", headers=headers)
            assert r.status_code == 401, i
            assert r.headers["ratelimit-limit"] == "5"
            assert r.headers["ratelimit-remaining"] == str(4 - i)
        r = await gw.http.get("/api/v2/crm/x", headers=_bad_token())
        assert r.status_code == 429
        assert r.json()["error"] == "rate_limited"
        assert r.headers["ratelimit-policy"] == "5;w=900"
        assert int(r.headers["retry-after"]) >= 1
        # a valid token is not an unauthenticated request
        assert (await gw.http.get("/api/v2/crm/x", headers=auth())).status_code == 200


async def test_one_address_is_capped_across_identities(
    gateway_factory: Any, own_redis: RedisServer, auth: Any
) -> None:
    async with gateway_factory(redis_url=own_redis.url, ip_rate_limit_per_minute=10) as gw:
        for i in range(10):
            r = await gw.http.get("/api/v2/crm/x", headers=auth(user_id=f"many-{i}"))
            assert r.status_code == 200, i
        r = await gw.http.get("/api/v2/crm/x", headers=auth(user_id="many-new"))
        assert r.status_code == 429
        assert r.headers["ratelimit-limit"] == "10"
        # bad tokens from the same address count against the same cap
        assert (await gw.http.get("/api/v2/crm/x", headers=_bad_token())).status_code == 429


async def test_one_tenant_is_capped_across_users(
    gateway_factory: Any, own_redis: RedisServer, auth: Any
) -> None:
    async with gateway_factory(redis_url=own_redis.url, tenant_rate_limit_per_minute=5) as gw:
        for i in range(5):
            r = await gw.http.get("/api/v2/crm/x", headers=auth(user_id=f"t-{i}", tenant_id="big"))
            assert r.status_code == 200, i
        r = await gw.http.get("/api/v2/crm/x", headers=auth(user_id="t-new", tenant_id="big"))
        assert r.status_code == 429
        assert r.headers["ratelimit-policy"] == "5;w=60"
        other = await gw.http.get("/api/v2/crm/x", headers=auth(user_id="t-0", tenant_id="small"))
        assert other.status_code == 200


async def test_forwarded_for_counts_only_from_trusted_proxies(
    gateway_factory: Any, own_redis: RedisServer, auth: Any
) -> None:
    async def statuses(gw: Any, addresses: list[str]) -> list[int]:
        out = []
        for i, address in enumerate(addresses):
            headers = {**auth(user_id=f"xff-{i}"), "X-Forwarded-For": address}
            out.append((await gw.http.get("/api/v2/crm/x", headers=headers)).status_code)
        return out

    spoofed = [f"198.51.100.{i}" for i in range(4)]
    async with gateway_factory(redis_url=own_redis.url, ip_rate_limit_per_minute=3) as gw:
        # the peer is not a trusted proxy: its X-Forwarded-For cannot pick a fresh bucket
        assert await statuses(gw, spoofed) == [200, 200, 200, 429]
    await own_redis_flush(own_redis)
    async with gateway_factory(
        redis_url=own_redis.url, ip_rate_limit_per_minute=3, trusted_proxies=["127.0.0.1/32"]
    ) as gw:
        assert await statuses(gw, spoofed) == [200, 200, 200, 200]
        assert await statuses(gw, ["203.0.113.9"] * 4) == [200, 200, 200, 429]
        r = await gw.http.get(
            "/api/v2/crm/x", headers={**auth(), "X-Forwarded-For": "192.0.2.1, 192.0.2.2"}
        )
        assert r.json()["headers"]["x-forwarded-for"] == "192.0.2.1, 192.0.2.2, 127.0.0.1"


async def own_redis_flush(server: RedisServer) -> None:
    client = aioredis.Redis.from_url(server.url)
    await client.flushall()
    await client.aclose()


# -- Redis outages (issue 20 items 8 and 9) ----------------------------------------------------


async def test_rate_limit_headers_are_omitted_while_redis_stalls(
    gateway_factory: Any, own_redis: RedisServer, auth: Any
) -> None:
    async with gateway_factory(redis_url=own_redis.url, rate_limit_fail_open=True) as gw:
        headers = auth(user_id="stall-user")
        r = await gw.http.get("/api/v2/crm/x", headers=headers)
        assert r.headers["ratelimit-remaining"] == "99"
        own_redis.pause()
        try:
            r = await gw.http.get("/api/v2/crm/x", headers=headers)
        finally:
            own_redis.resume()
        assert r.status_code == 200  # fail open...
        assert not [h for h in r.headers if h.startswith("ratelimit-")]  # ...and says nothing

        async def counted_again() -> bool:
            r = await gw.http.get("/api/v2/crm/x", headers=headers)
            return "ratelimit-remaining" in r.headers

        await wait_for(counted_again, within=10, what="rate limiting to resume")


async def test_no_stale_hit_after_writes_while_redis_stalls(
    gateway_factory: Any, own_redis: RedisServer, auth: Any
) -> None:
    """Two writes while Redis is stalled: neither resource may answer a HIT from before its
    write afterwards, whatever became of the invalidations sent during the stall (one goes
    out on a pooled connection and runs when Redis resumes, in any order with the next
    lookup; the other waits for a new connection's handshake and is never sent)."""
    async with gateway_factory(redis_url=own_redis.url) as gw:
        headers = auth(user_id="writer", tenant_id="stale-co")
        paths = ["/api/v2/crm/contacts/9?cache=public", "/api/v2/crm/deals/9?cache=public"]
        first = [await gw.http.get(p, headers=headers) for p in paths]
        for p in paths:
            assert (await gw.http.get(p, headers=headers)).headers["x-cache"] == "HIT"
        own_redis.pause()
        try:
            writes = await asyncio.gather(
                gw.http.post("/api/v2/crm/contacts", headers=headers, json={"n": 1}),
                gw.http.post("/api/v2/crm/deals", headers=headers, json={"n": 1}),
            )
            assert [w.status_code for w in writes] == [200, 200]
        finally:
            own_redis.resume()
        for p, before in zip(paths, first, strict=True):
            after = await gw.http.get(p, headers=headers)
            assert after.headers["x-cache"] != "HIT", p
            assert after.json()["hit"] > before.json()["hit"], p  # the upstream answered again


# -- RateLimiter.give_back on real Redis windows -------------------------------------------------


async def test_a_give_back_takes_the_count_off_the_window_it_was_made_in_never_below_zero(
    redis_client: aioredis.Redis,
) -> None:
    """``give_back`` (a stream connect refused ``session_closed`` or cancelled after it was
    counted) takes one count off the window ``hit`` made it in, on Redis's clock: after the
    window rolled over, the new window's count stays; a second give-back of the same count, or
    one after its window expired, never takes a counter below zero (nor creates one)."""
    limiter = RateLimiter(
        redis_client, policies=rate_limit_policies(GatewaySettings()), fail_open=False
    )
    window = 1
    lim = Limit("stream_user", f"rl-give-back-{uuid.uuid4().hex[:8]}", 5, window)

    async def count(idx: int) -> int | None:
        raw = await redis_client.get(f"{lim.key}:{idx}")
        return None if raw is None else int(raw)

    async def redis_window() -> int:
        seconds, micros = await redis_client.time()
        return int((seconds * 1000 + micros // 1000) // (window * 1000))

    first = await limiter.hit([lim])
    assert first is not None
    assert first.allowed
    assert first.counted_at_ms is not None
    made_in = first.counted_at_ms // (window * 1000)
    assert await count(made_in) == 1

    async def rolled_over() -> bool:
        return await redis_window() > made_in

    await wait_for(rolled_over, within=5, what="the next window (Redis's clock)")
    second = await limiter.hit([lim])
    assert second is not None
    assert second.counted_at_ms is not None
    now_in = second.counted_at_ms // (window * 1000)
    assert now_in > made_in
    assert await count(now_in) == 1

    await limiter.give_back([lim], first)
    assert await count(made_in) == 0, "taken off the window the count was made in"
    assert await count(now_in) == 1, "the current window's count is not the one given back"

    await limiter.give_back([lim], first)
    assert await count(made_in) == 0, "a second give-back does not go below zero"
    assert await count(now_in) == 1

    async def expired() -> bool:
        return await redis_client.exists(f"{lim.key}:{made_in}") == 0

    await wait_for(expired, within=5, what="the counter to expire (two windows)")
    await limiter.give_back([lim], first)
    assert await count(made_in) is None, "no counter made (negative) for an expired window"


class HeldReplies:
    """A TCP proxy in front of redis-server that passes every request on at once and, while
    ``hold`` is set, holds Redis's replies: a command Redis has run (its count made) whose
    answer has not reached the client yet. ``replied`` is set when a held reply arrives."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.hold = False
        self.released = asyncio.Event()
        self.replied = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def __aenter__(self) -> HeldReplies:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        redis_r, redis_w = await asyncio.open_connection("127.0.0.1", self.port)

        async def requests() -> None:
            while data := await client_r.read(65536):
                redis_w.write(data)
                await redis_w.drain()
            redis_w.close()

        async def replies() -> None:
            while data := await redis_r.read(65536):
                if self.hold:
                    self.replied.set()
                    await self.released.wait()
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        for pump in (requests(), replies()):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def test_a_connect_cancelled_while_its_hit_is_in_flight_gives_that_count_back(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    """A later connect on a session, counted against its address, cancelled (the gateway's
    shutdown) once Redis has run its user hit and while the answer is on its way: both counts
    go back. Before, the cancellation ended the hit unanswered, so only the address count went
    back and the user count stayed for the window."""
    prefix = f"rl-in-flight-{uuid.uuid4().hex[:8]}"
    settings = GatewaySettings(
        stream_connect_limit_per_minute=5, stream_user_connect_limit_per_minute=3
    )
    policies = dataclasses.replace(rate_limit_policies(settings), prefix=prefix)
    verified, go_on = asyncio.Event(), asyncio.Event()

    class HeldVerifier:
        async def verify(self, token: str) -> Identity:
            verified.set()  # the address was counted, its answer not held
            await go_on.wait()
            return Identity(user_id="in-flight", tenant_id="acme")

    async def counts() -> list[int]:
        """The connect's address and user counts, over every window."""
        found = []
        for who in ("sio:ip:", "sio:acme:"):
            keys = [k async for k in redis_client.scan_iter(match=f"{prefix}:{who}*")]
            found.append(sum([int(await redis_client.get(k) or 0) for k in keys]))
        return found

    async with HeldReplies(redis_server.port) as proxy:
        client = aioredis.Redis.from_url(proxy.url)
        limiter = RateLimiter(client, policies=policies, fail_open=False)
        stream = EventStream(
            verifier=HeldVerifier(),  # type: ignore[arg-type]
            topics=["crm-changes"],
            path="/api/xynergyos/v2/stream",
            origins=OriginPolicy(origins=[], patterns=[]),
            metrics=GatewayMetrics(),
            limiter=limiter,
        )
        try:
            # the script loaded and the pool's connection made: the held reply is the hit's
            warm = await limiter.hit([Limit("warm", f"{prefix}:warm", 5, 60)])
            assert warm is not None
            assert warm.allowed
            scope = {"type": "websocket", "client": ("198.51.100.7", 4321), "headers": []}
            connect = asyncio.create_task(
                stream._connect("sid1", {"asgi.scope": scope}, {"token": "a token"})
            )
            async with asyncio.timeout(10):
                await verified.wait()
            proxy.hold = True
            go_on.set()
            async with asyncio.timeout(10):
                await proxy.replied.wait()  # Redis counted the user; its answer is held
            assert await counts() == [1, 1], "both counts made"
            connect.cancel()
            proxy.released.set()
            with pytest.raises(asyncio.CancelledError):
                async with asyncio.timeout(10):
                    await connect
            async with asyncio.timeout(10):
                await stream.aclose()  # waits for the give-backs under way
            assert await counts() == [0, 0], "the count of the hit in flight went back too"
        finally:
            proxy.released.set()
            await client.aclose()
