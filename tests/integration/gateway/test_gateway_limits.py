"""Cache, rate limit and circuit breaker through the running gateway, against real Redis."""

from __future__ import annotations

from typing import Any

from .conftest import RunningGateway, Upstream, wait_for


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
            assert (await gw.http.get("/readyz")).status_code == 503
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
