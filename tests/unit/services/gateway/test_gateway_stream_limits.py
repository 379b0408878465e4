"""socket.io connections are rate-limited like requests: per client address before the token
is read (through trusted proxies; at the engine.io handshake, so sessions that never connect
are counted too), then per verified user; a refusal says which limit, how many and when to
retry (a connect_error, or a handshake's 429)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import socketio

from services.common.auth import AuthError
from services.common.tenancy import Identity
from services.gateway import stream as stream_module
from services.gateway.app import rate_limit_policies
from services.gateway.cors import OriginPolicy
from services.gateway.headers import TrustedProxies
from services.gateway.metrics import GatewayMetrics
from services.gateway.ratelimit import Decision, Limit, RateLimiterUnavailableError
from services.gateway.settings import GatewaySettings
from services.gateway.stream import EventStream, is_handshake


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
        self.given_back: list[Limit] = []
        self.giving_back = asyncio.Event()
        self.hold_give_backs: asyncio.Event | None = None

    async def hit(self, limits: list[Limit]) -> Decision | None:
        if not limits:
            return None
        if self.unavailable:
            raise RateLimiterUnavailableError
        self.hits.extend(limits)
        lim = limits[0]
        allowed = lim.name not in self.refuse
        counted_at = 1_700_000_000_000 if allowed else None
        return Decision(
            allowed,
            lim.limit,
            0 if not allowed else 2,
            12,
            lim.window,
            name=lim.name,
            counted_at_ms=counted_at,
        )

    async def give_back(self, limits: list[Limit], decision: Decision) -> None:
        assert decision.counted_at_ms is not None
        self.giving_back.set()
        if self.hold_give_backs is not None:  # Redis slow to answer
            await self.hold_give_backs.wait()
        self.given_back.extend(limits)


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


@pytest.mark.parametrize(
    ("scope", "handshake"),
    [
        ({"type": "http", "method": "GET", "query_string": b"EIO=4&transport=polling"}, True),
        ({"type": "websocket", "query_string": b"EIO=4&transport=websocket"}, True),
        (
            {"type": "http", "method": "GET", "query_string": b"EIO=4&transport=polling&sid=a"},
            False,
        ),
        (
            {"type": "http", "method": "POST", "query_string": b"EIO=4&transport=polling&sid=a"},
            False,
        ),
        ({"type": "http", "method": "POST", "query_string": b"EIO=4&transport=polling"}, False),
        ({"type": "websocket", "query_string": b"EIO=4&transport=websocket&sid=a"}, False),
    ],
)
def test_a_handshake_is_a_get_or_websocket_without_a_session(
    scope: dict[str, Any], handshake: bool
) -> None:
    assert is_handshake(scope) is handshake


async def _handshake(s: EventStream, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a handshake through the stream's app, engine.io replaced by a recorder."""
    sent: list[dict[str, Any]] = []
    reached: list[dict[str, Any]] = []

    async def engineio(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope)

    async def send(message: Any) -> None:
        sent.append(message)

    s.engineio_app = engineio  # type: ignore[assignment]
    await s.app(scope, None, send)  # type: ignore[arg-type]
    return sent if not reached else [{"reached": reached[0]}]


async def test_the_address_is_counted_at_the_handshake_and_once_per_session() -> None:
    """The handshake counts the address; the session's first connect does not count it again,
    a later connect on the same session does (a CONNECT/DISCONNECT loop on one session)."""
    limiter = Limiter()
    s = stream(limiter)
    scope = environ("203.0.113.7")["asgi.scope"] | {"query_string": b"EIO=4&transport=websocket"}
    [outcome] = await _handshake(s, scope)
    assert "reached" in outcome
    assert [lim.name for lim in limiter.hits] == ["stream_ip"]
    env = {"asgi.scope": outcome["reached"]}  # engine.io keeps the handshake's scope
    await s._connect("sid1", env, {"token": "good"})
    assert [lim.name for lim in limiter.hits] == ["stream_ip", "stream_user"]
    await s._connect("sid2", env, {"token": "good"})
    assert [lim.name for lim in limiter.hits] == ["stream_ip", "stream_user"] * 2


async def test_a_handshake_past_the_address_limit_is_refused_before_engineio() -> None:
    s = stream(Limiter("stream_ip"))
    polling = {"type": "http", "method": "GET", "query_string": b"EIO=4&transport=polling"}
    start, body = await _handshake(s, environ("10.1.2.3", "198.51.100.9")["asgi.scope"] | polling)
    assert start["status"] == 429
    assert (b"retry-after", b"12") in start["headers"]
    assert json.loads(body["body"]) == {
        "error": "rate_limited",
        "message": "more than 5 connections per 60 s from this address; retry in 12 s",
        "status": 429,
        "limit": "stream_ip",
        "retryAfter": 12,
    }
    websocket = {"type": "websocket", "query_string": b"EIO=4&transport=websocket"}
    closed = await _handshake(s, environ("203.0.113.7")["asgi.scope"] | websocket)
    assert closed == [{"type": "websocket.close", "code": 1008}]


async def test_failing_closed_a_handshake_is_refused_with_503() -> None:
    s = stream(Limiter(unavailable=True))
    polling = {"type": "http", "method": "GET", "query_string": b"EIO=4&transport=polling"}
    start, body = await _handshake(s, environ("203.0.113.7")["asgi.scope"] | polling)
    assert start["status"] == 503
    assert json.loads(body["body"])["error"] == "rate_limiter_unavailable"


async def test_a_connect_whose_session_closed_gives_back_what_it_counted() -> None:
    """A later connect on a session (counted against the address, then the user) whose
    session closed while it was decided is refused with ``session_closed`` and gives both
    counts back; a refused token keeps its address count (that refusal is the client's)."""
    limiter = Limiter()
    s = stream(limiter)

    async def closed(sid: str, session: dict[str, Any]) -> None:
        raise KeyError(sid)  # engine.io's answer for a session that is gone

    s.sio.save_session = closed  # type: ignore[method-assign]
    args = await refusal(s, environ("203.0.113.7"), "good")
    assert args["message"] == "session_closed"
    assert [lim.name for lim in limiter.given_back] == ["stream_ip", "stream_user"]
    assert limiter.given_back == limiter.hits
    assert s.metrics.stream_clients._value.get() == 0
    limiter.given_back.clear()
    await refusal(s, environ("203.0.113.7"), "bad")
    assert limiter.given_back == []


async def reached(event: asyncio.Event) -> None:
    """Wait for ``event``, failing the test (not hanging it) when it never comes."""
    async with asyncio.timeout(5):
        await event.wait()


class Hung:
    """``save_session`` of a connect that is still being decided when it is cancelled (its
    counts made)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def __call__(self, sid: str, session: dict[str, Any]) -> None:
        self.entered.set()
        await asyncio.Event().wait()


async def test_a_connect_cancelled_after_its_counts_gives_them_back_once() -> None:
    """Cancelled after both its counts (as the gateway's shutdown cancels engine.io's tasks):
    nobody got a connection, so both counts go back, as for ``session_closed``. Before, they
    stayed, and each such connect used one of the user's connections for the window."""
    limiter = Limiter()
    s = stream(limiter)
    s.sio.save_session = hung = Hung()  # type: ignore[method-assign]
    connect = asyncio.create_task(s._connect("sid1", environ("203.0.113.7"), {"token": "good"}))
    await reached(hung.entered)
    connect.cancel()
    with pytest.raises(asyncio.CancelledError):
        await connect
    assert [lim.name for lim in limiter.given_back] == ["stream_ip", "stream_user"]
    assert limiter.given_back == limiter.hits
    assert s.metrics.stream_clients._value.get() == 0
    await s.aclose()
    assert [lim.name for lim in limiter.given_back] == ["stream_ip", "stream_user"]


async def test_a_give_back_outlives_a_second_cancellation_and_aclose_waits_for_it() -> None:
    """The give-back is shielded: a connect cancelled again while Redis takes the count back
    ends at once, the give-back goes on, and ``aclose`` (before the gateway closes Redis)
    waits for it."""
    limiter = Limiter()
    limiter.hold_give_backs = asyncio.Event()
    s = stream(limiter)
    s.sio.save_session = hung = Hung()  # type: ignore[method-assign]
    connect = asyncio.create_task(s._connect("sid1", environ("203.0.113.7"), {"token": "good"}))
    await reached(hung.entered)
    connect.cancel()
    await reached(limiter.giving_back)
    connect.cancel()
    with pytest.raises(asyncio.CancelledError):
        await connect
    assert limiter.given_back == []
    closing = asyncio.create_task(s.aclose())
    done, _ = await asyncio.wait({closing}, timeout=0.2)
    assert not done, "aclose returned before the give-back (Redis would be closed under it)"
    limiter.hold_give_backs.set()
    async with asyncio.timeout(1):
        await closing
    assert [lim.name for lim in limiter.given_back] == ["stream_ip", "stream_user"]


async def test_aclose_waits_for_a_give_back_no_longer_than_its_grace(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(stream_module, "CONNECT_GRACE_SECONDS", 0.1)
    limiter = Limiter()
    limiter.hold_give_backs = asyncio.Event()  # Redis never answers
    s = stream(limiter)
    s.sio.save_session = hung = Hung()  # type: ignore[method-assign]
    connect = asyncio.create_task(s._connect("sid1", environ("203.0.113.7"), {"token": "good"}))
    await reached(hung.entered)
    connect.cancel()
    await reached(limiter.giving_back)
    connect.cancel()
    with pytest.raises(asyncio.CancelledError):
        await connect
    async with asyncio.timeout(1):
        await s.aclose()
    assert not s._giving_back
    assert "stream connects still being decided at shutdown; their counts may stay" in (
        caplog.messages
    )
