"""socket.io connections are rate-limited like requests: per client address before the token
is read (through trusted proxies), then per verified user; a refusal is a connect_error that
says which limit, how many and when to retry."""

from __future__ import annotations

from typing import Any

import pytest
import socketio

from services.common.auth import AuthError
from services.common.tenancy import Identity
from services.gateway.app import rate_limit_policies
from services.gateway.cors import OriginPolicy
from services.gateway.headers import TrustedProxies
from services.gateway.metrics import GatewayMetrics
from services.gateway.ratelimit import Decision, Limit, RateLimiterUnavailableError
from services.gateway.settings import GatewaySettings
from services.gateway.stream import EventStream


class Verifier:
    def __init__(self) -> None:
        self.calls = 0

    async def verify(self, token: str) -> Identity:
        self.calls += 1
        if token != "good":
            raise AuthError("signature", "the token's signature does not verify")
        return Identity(user_id="u1", tenant_id="acme")


class Limiter:
    """Refuses the limits named in ``refuse`` (reset in 12 s), counts every hit."""

    def __init__(self, *refuse: str, unavailable: bool = False) -> None:
        settings = GatewaySettings(
            stream_connect_limit_per_minute=5, stream_user_connect_limit_per_minute=3
        )
        self.policies = rate_limit_policies(settings)
        self.refuse = set(refuse)
        self.unavailable = unavailable
        self.hits: list[Limit] = []

    async def hit(self, limits: list[Limit]) -> Decision | None:
        if not limits:
            return None
        if self.unavailable:
            raise RateLimiterUnavailableError
        self.hits.extend(limits)
        lim = limits[0]
        allowed = lim.name not in self.refuse
        return Decision(allowed, lim.limit, 0 if not allowed else 2, 12, lim.window, name=lim.name)


def stream(limiter: Limiter | None, verifier: Verifier | None = None) -> EventStream:
    s = EventStream(
        verifier=verifier or Verifier(),  # type: ignore[arg-type]
        topics=["crm-changes"],
        path="/api/xynergyos/v2/stream",
        origins=OriginPolicy(origins=[], patterns=[]),
        metrics=GatewayMetrics(),
        limiter=limiter,  # type: ignore[arg-type]
        trusted=TrustedProxies(["10.0.0.0/8"]),
    )

    async def save_session(sid: str, session: dict[str, Any]) -> None:
        return None  # no engine.io session behind these direct calls

    s.sio.save_session = save_session  # type: ignore[method-assign]
    return s


def environ(peer: str, xff: str | None = None) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", xff.encode())] if xff else []
    return {"asgi.scope": {"type": "websocket", "client": (peer, 4321), "headers": headers}}


async def refusal(s: EventStream, env: dict[str, Any], token: str) -> dict[str, Any]:
    with pytest.raises(socketio.exceptions.ConnectionRefusedError) as info:
        await s._connect("sid1", env, {"token": token})
    return info.value.error_args  # type: ignore[no-any-return]


async def test_an_address_past_its_limit_is_refused_before_its_token_is_read() -> None:
    verifier, limiter = Verifier(), Limiter("stream_ip")
    s = stream(limiter, verifier)
    # behind the trusted load balancer, the address is the client's, not the balancer's
    args = await refusal(s, environ("10.1.2.3", "198.51.100.9"), "good")
    assert args == {
        "message": "rate_limited",
        "data": {
            "limit": "stream_ip",
            "retryAfter": 12,
            "message": "more than 5 connections per 60 s from this address; retry in 12 s",
        },
    }
    assert verifier.calls == 0
    assert [lim.name for lim in limiter.hits] == ["stream_ip"]
    assert "198.51.100.9" in limiter.hits[0].key
    assert s.metrics.rate_limited.labels(s.path)._value.get() == 1


async def test_a_refused_token_is_counted_against_the_address() -> None:
    limiter = Limiter()
    args = await refusal(stream(limiter), environ("203.0.113.7"), "bad")
    assert args == {"message": "unauthorized", "data": {"check": "signature"}}
    assert [(lim.name, "203.0.113.7" in lim.key) for lim in limiter.hits] == [("stream_ip", True)]


async def test_a_user_past_its_limit_is_refused_after_the_address_was_counted() -> None:
    limiter = Limiter("stream_user")
    args = await refusal(stream(limiter), environ("203.0.113.7"), "good")
    assert args["message"] == "rate_limited"
    assert args["data"]["limit"] == "stream_user"
    assert args["data"]["message"].startswith("more than 3 connections per 60 s from this user")
    assert [lim.name for lim in limiter.hits] == ["stream_ip", "stream_user"]
    assert "acme" in limiter.hits[1].key


async def test_within_the_limits_a_connection_is_accepted_and_counted_twice() -> None:
    limiter = Limiter()
    s = stream(limiter)
    await s._connect("sid1", environ("203.0.113.7"), {"token": "good"})
    assert [lim.name for lim in limiter.hits] == ["stream_ip", "stream_user"]
    assert s.metrics.stream_clients._value.get() == 1


async def test_failing_closed_without_redis_refuses_with_its_own_reason() -> None:
    args = await refusal(stream(Limiter(unavailable=True)), environ("203.0.113.7"), "good")
    assert args["message"] == "rate_limiter_unavailable"
    assert args["data"]["retryAfter"] == 1


def test_zero_turns_each_connect_limit_off() -> None:
    settings = GatewaySettings(
        stream_connect_limit_per_minute=0, stream_user_connect_limit_per_minute=0
    )
    policies = rate_limit_policies(settings)
    assert policies.stream_connect(client_ip="203.0.113.7") == []
    assert policies.stream_user(Identity(user_id="u1", tenant_id="acme")) == []
    on = rate_limit_policies(GatewaySettings())
    assert [lim.limit for lim in on.stream_connect(client_ip="203.0.113.7")] == [60]
    assert [lim.limit for lim in on.stream_user(Identity(user_id="u1", tenant_id="acme"))] == [20]
