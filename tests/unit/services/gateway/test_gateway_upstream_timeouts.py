"""The route timeout against a real (local aiohttp) upstream: it bounds the wait for the
response head and each silence in the body, not a whole stream, and a stream cut by it after
it started does not count toward opening the upstream's breaker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from services.common.tenancy import Identity
from services.gateway.breaker import BreakerBoard, BreakerState
from services.gateway.gate import GateResult
from services.gateway.metrics import GatewayMetrics
from services.gateway.proxy import Proxy, TableHolder
from services.gateway.ratelimit import Decision, Limit, Policies
from services.gateway.routing import Route, RouteTable
from services.gateway.settings import GatewaySettings

ROUTE_TIMEOUT = 0.5
GAP = 0.15  # between two events of the stream: well inside the route timeout
EVENTS = 6  # the whole stream takes EVENTS * GAP = 0.9 s, well past the route timeout
RELEASE = web.AppKey("release", asyncio.Event)


class Verifier:
    async def verify(self, token: str) -> Identity:
        return Identity(user_id="u1", tenant_id="acme")


class Signer:
    def sign(self, identity: Identity) -> str:
        return "signed"


class Limiter:
    policies = Policies(window=60, per_user=100, per_ip=50, unauthenticated=5)


class Gate:
    limiter = Limiter()

    async def check(self, identity: Identity, *, limits: list[Limit], lookup: Any) -> GateResult:
        return GateResult(Decision(True, 100, 99, 60, 60))


async def _events(request: web.Request) -> web.StreamResponse:
    """An SSE answer: one event every GAP, then the end."""
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(EVENTS):
        await resp.write(f"data: {i}\n\n".encode())
        await asyncio.sleep(GAP)
    await resp.write_eof()
    return resp


async def _stalls(request: web.Request) -> web.StreamResponse:
    """The head and one event, then silence until the test ends."""
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(b"data: 0\n\n")
    await request.app[RELEASE].wait()
    return resp


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    app = web.Application()
    app[RELEASE] = asyncio.Event()
    app.router.add_get("/api/v1/ai/events", _events)
    app.router.add_get("/api/v1/ai/stalls", _stalls)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app[RELEASE].set()
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


def _proxy(upstream: str, client: aiohttp.ClientSession, board: BreakerBoard) -> Proxy:
    route = Route("/api/v1/ai", upstream, "default/ai", timeout_seconds=ROUTE_TIMEOUT)
    return Proxy(
        settings=GatewaySettings(retries=0),
        routes=TableHolder(RouteTable.build([route]), True),
        verifier=Verifier(),  # type: ignore[arg-type]
        signer=Signer(),  # type: ignore[arg-type]
        gate=Gate(),  # type: ignore[arg-type]
        cache=None,
        breakers=board,
        client=client,
        metrics=GatewayMetrics(),
        access_log=False,
    )


async def _get(p: Proxy, path: str) -> list[MutableMapping[str, Any]]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer t")],
        "client": ("203.0.113.7", 5555),
        "scheme": "http",
    }
    await p(scope, receive, send)
    return sent


def _body(sent: list[MutableMapping[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def _finished(sent: list[MutableMapping[str, Any]]) -> bool:
    last = sent[-1]
    return last["type"] == "http.response.body" and not last.get("more_body", False)


async def test_a_stream_that_keeps_sending_outlives_the_route_timeout(
    upstream: str, client: aiohttp.ClientSession
) -> None:
    board = BreakerBoard(failure_threshold=1, reset_seconds=30)
    p = _proxy(upstream, client, board)
    for _ in range(2):  # a cut would have opened the breaker (threshold 1) the second time
        sent = await _get(p, "/api/v1/ai/events")
        assert sent[0]["status"] == 200
        assert _body(sent) == b"".join(f"data: {i}\n\n".encode() for i in range(EVENTS))
        assert _finished(sent)
    assert board.get(upstream).state is BreakerState.CLOSED


async def test_a_started_stream_cut_by_silence_is_not_a_breaker_failure(
    upstream: str, client: aiohttp.ClientSession
) -> None:
    board = BreakerBoard(failure_threshold=1, reset_seconds=30)
    p = _proxy(upstream, client, board)
    for _ in range(2):
        sent = await _get(p, "/api/v1/ai/stalls")
        assert sent[0]["status"] == 200
        assert _body(sent) == b"data: 0\n\n"
        assert not _finished(sent)  # left unfinished: the client sees it cut
    assert board.get(upstream).state is BreakerState.CLOSED
