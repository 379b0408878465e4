"""The stream's connect timeout (``_Server``), driven through python-socketio's own packet
handling on real engine.io session objects: a session without an accepted connection has one
timer, whether it never connected or its connection ended (the client's namespace DISCONNECT,
the server's at token expiry) while the session stayed open; the timer is dropped at an
accepted connect and at the close, and none is left after shutdown. The same against the
gateway over HTTP: tests/integration/gateway/test_gateway_stream.py."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
import socketio
from engineio.async_socket import AsyncSocket

from services.common.auth import AuthError
from services.common.tenancy import Identity
from services.gateway.app import rate_limit_policies
from services.gateway.cors import OriginPolicy
from services.gateway.metrics import GatewayMetrics
from services.gateway.ratelimit import Decision, Limit
from services.gateway.settings import GatewaySettings
from services.gateway.stream import EventStream, _Server

CONNECT = '0{"token":"good"}'  # socket.io CONNECT to "/" with its auth
DISCONNECT = "1"  # socket.io DISCONNECT of "/": the connection ends, the session stays


def server() -> _Server:
    """A server that accepts the token "good", as EventStream does (``connected``)."""
    s = _Server(connect_timeout=30, async_mode="asgi")

    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if auth != {"token": "good"}:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        s.connected(s.manager.eio_sid_from_sid(sid, "/"))

    s.on("connect", connect)
    return s


async def open_session(s: _Server, eio_sid: str) -> AsyncSocket:
    """An engine.io session as engine.io opens one: the socket, then the connect event."""
    sock = AsyncSocket(s.eio, eio_sid)
    s.eio.sockets[eio_sid] = sock
    await s._handle_eio_connect(eio_sid, {})
    return sock


def connection(s: _Server, eio_sid: str) -> str | None:
    sid = s.manager.sid_from_eio_sid(eio_sid, "/")
    return sid if sid is not None and s.manager.is_connected(sid, "/") else None


async def fire(s: _Server, eio_sid: str) -> None:
    """Run the session's timer now (it must be armed) and the close it starts."""
    s._unconnected[eio_sid].cancel()
    s._timed_out(eio_sid)
    await asyncio.gather(*s._closing)


async def test_a_namespace_disconnect_gives_the_open_session_its_timer_again() -> None:
    s = server()
    sock = await open_session(s, "e1")
    await s._handle_eio_message("e1", CONNECT)
    assert connection(s, "e1") is not None
    assert "e1" not in s._unconnected
    await s._handle_eio_message("e1", DISCONNECT)
    assert connection(s, "e1") is None
    assert s.is_open("e1")
    timer = s._unconnected["e1"]  # re-armed: without it the session idled to its ping timeout
    assert timer.when() - asyncio.get_running_loop().time() == pytest.approx(30, abs=1)
    # a DISCONNECT without a connection neither adds a timer nor restarts the one running
    await s._handle_eio_message("e1", DISCONNECT)
    assert s._unconnected == {"e1": timer}
    assert not timer.cancelled()
    # connecting again on the same session drops it; the next DISCONNECT arms a new one
    await s._handle_eio_message("e1", CONNECT)
    assert connection(s, "e1") is not None
    assert timer.cancelled()
    assert not s._unconnected
    await s._handle_eio_message("e1", DISCONNECT)
    await fire(s, "e1")
    assert "e1" not in s.eio.sockets
    assert sock.closed
    assert not s._unconnected


async def test_a_server_disconnect_gives_the_open_session_its_timer_again() -> None:
    """As at token expiry: the server ends the connection; a client that keeps its engine.io
    session must connect again within the timeout."""
    s = server()
    await open_session(s, "e1")
    await s._handle_eio_message("e1", CONNECT)
    sid = connection(s, "e1")
    assert sid is not None
    await s.disconnect(sid)
    assert connection(s, "e1") is None
    assert list(s._unconnected) == ["e1"]
    await fire(s, "e1")
    assert "e1" not in s.eio.sockets


async def test_a_connect_taken_up_after_the_timer_fired_is_judged_before_closing() -> None:
    """The timer's callback only starts the close; a CONNECT python-socketio took up before
    that close ran (registered, its token being checked) keeps the session, which is judged
    again a timeout later. Deciding in the callback closed it under the pending connect."""
    s = server()
    await open_session(s, "e1")
    s._unconnected["e1"].cancel()
    s._timed_out("e1")
    await s.manager.pre_connect("e1", "/")  # what _handle_connect does first
    await asyncio.gather(*s._closing)
    assert s.is_open("e1")
    assert list(s._unconnected) == ["e1"]


async def test_shutdown_cancels_the_timers_and_finishes_the_closes() -> None:
    s = server()
    for eio_sid in ("e1", "e2", "e3"):
        await open_session(s, eio_sid)
    timers = [s._unconnected["e1"], s._unconnected["e2"]]
    s._unconnected["e3"].cancel()
    s._timed_out("e3")  # a close under way
    closing = set(s._closing)
    await s.shutdown()
    assert not s._unconnected
    assert all(t.cancelled() for t in timers)
    assert closing
    assert all(task.done() for task in closing)
    assert not s._closing
    assert not s.eio.sockets  # the sessions left open are closed too (_EngineServer)
    # nothing is armed after shutdown (a late engine.io open, a connection ending)
    await open_session(s, "e4")
    await s._handle_eio_message("e4", CONNECT)
    await s._handle_eio_message("e4", DISCONNECT)
    assert not s._unconnected


class GatedVerifier:
    """Accepts "good" once ``release`` is set: a connect whose token is still being checked."""

    def __init__(self) -> None:
        self.checking = asyncio.Event()
        self.release = asyncio.Event()

    async def verify(self, token: str) -> Identity:
        self.checking.set()
        await self.release.wait()
        if token != "good":
            raise AuthError("signature", "the token's signature does not verify")
        return Identity(user_id="u1", tenant_id="acme")


async def test_a_session_closed_while_its_connect_is_decided_leaves_no_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The session closes (the client's CLOSE, a ping timeout, the connect timeout) while the
    token is checked: the connect is refused, and python-socketio forgets it. Before, the
    session's KeyError escaped the connect handler, logged at ERROR, and the half-made
    connection stayed in the manager for good."""
    verifier = GatedVerifier()
    stream = EventStream(
        verifier=verifier,  # type: ignore[arg-type]
        topics=["crm-changes"],
        path="/api/xynergyos/v2/stream",
        origins=OriginPolicy(origins=[], patterns=[]),
        metrics=GatewayMetrics(),
    )
    s = stream.sio
    sock = await open_session(s, "e1")
    deciding = asyncio.create_task(s._handle_eio_message("e1", CONNECT))
    await verifier.checking.wait()
    await sock.close(wait=False, abort=True)
    verifier.release.set()
    with caplog.at_level(logging.WARNING):
        await deciding
    assert s.manager.sid_from_eio_sid("e1", "/") is None
    assert not s.manager.pending_connect
    assert stream.metrics.stream_clients._value.get() == 0
    assert not stream._deadlines
    assert not s._unconnected
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- shutdown ends engine.io's tasks --------------------------------------------------------

PATH = "/api/xynergyos/v2/stream"
POLLING = {"EIO": "4", "transport": "polling"}


class GoodVerifier:
    async def verify(self, token: str) -> Identity:
        if token != "good":
            raise AuthError("signature", "the token's signature does not verify")
        return Identity(user_id="u1", tenant_id="acme")


class CountingLimiter:
    """Allows every connection; records each count and each count given back. With
    ``hold_user_hits``, a user count is made and its answer held until the event is set."""

    def __init__(self) -> None:
        self.policies = rate_limit_policies(GatewaySettings())
        self.hits: list[Limit] = []
        self.given_back: list[Limit] = []
        self.user_counted = asyncio.Event()
        self.hold_user_hits: asyncio.Event | None = None  # set: a user count's answer comes

    async def hit(self, limits: list[Limit]) -> Decision | None:
        self.hits.extend(limits)
        lim = limits[0]
        if lim.name == "stream_user" and self.hold_user_hits is not None:
            self.user_counted.set()
            await self.hold_user_hits.wait()
        return Decision(True, lim.limit, 1, 60, lim.window, name=lim.name, counted_at_ms=1)

    async def give_back(self, limits: list[Limit], decision: Decision) -> None:
        self.given_back.extend(limits)


def engineio_tasks() -> list[asyncio.Task[Any]]:
    """Unfinished tasks running engine.io's or python-socketio's code (a session's ping,
    engine.io's service task, an event handler)."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        where = code.co_filename if code is not None else ""
        if not task.done() and ("/engineio/" in where or "/socketio/" in where):
            found.append(task)
    return found


async def until(condition: Any, what: str) -> None:
    """Let the loop run until ``condition()`` holds (no fixed sleep); bounded in steps."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def test_aclose_ends_every_engineio_task_of_the_sessions_left_open() -> None:
    """engine.io starts a task per session that sleeps a ping interval (25 s) before each
    PING and keeps no reference to it; its shutdown stopped only its service task, so each
    session open at shutdown left its ping task behind for up to 25 s. ``aclose`` now closes
    the sessions (a pending long poll answers with the CLOSE packet) and ends their tasks."""
    stream = EventStream(
        verifier=GoodVerifier(),  # type: ignore[arg-type]
        topics=["crm-changes"],
        path=PATH,
        origins=OriginPolicy(origins=[], patterns=[]),
        metrics=GatewayMetrics(),
    )
    transport = httpx.ASGITransport(app=stream.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        opened = await http.get(f"{PATH}/", params=POLLING)
        assert opened.status_code == 200, opened.text
        sid = json.loads(opened.text[1:])["sid"]
        session = {**POLLING, "sid": sid}
        posted = await http.post(f"{PATH}/", params=session, content=f"4{CONNECT}")
        assert posted.status_code == 200, posted.text
        accepted = await http.get(f"{PATH}/", params=session)
        assert accepted.text.startswith("40"), accepted.text  # connected
        idle = await http.get(f"{PATH}/", params=POLLING)  # a second session, never connected
        assert idle.status_code == 200, idle.text
        sock = stream.sio.eio.sockets[sid]
        long_poll = asyncio.create_task(http.get(f"{PATH}/", params=session))
        await until(lambda: sock.queue._getters, "the long poll to wait for packets")
        pings = [t for t in engineio_tasks() if "_send_ping" in repr(t.get_coro())]
        assert len(pings) == 2  # one per session, each asleep for the ping interval
        assert stream.metrics.stream_clients._value.get() == 1

        await stream.aclose()

        assert engineio_tasks() == []
        assert all(task.cancelled() for task in pings)
        assert not stream.sio.eio.sockets
        assert sock.closed
        answered = await asyncio.wait_for(long_poll, timeout=10)
        assert answered.status_code == 200
        assert answered.text == "1"  # engine.io CLOSE: the client knows
        assert stream.metrics.stream_clients._value.get() == 0
        assert not stream.sio._unconnected
        gone = await http.get(f"{PATH}/", params=session)
        assert gone.status_code == 400


async def test_aclose_waits_for_a_connect_being_decided_which_gives_its_user_count_back() -> None:
    """A CONNECT in flight at shutdown: python-socketio decides it in the task of the request
    that carried it (here a long-polling POST), which the shutdown does not end. ``aclose``
    closes its session and waits for it: refused ``session_closed``, it gives its user count
    back before ``aclose`` returns (the gateway closes Redis after it). The handshake's
    address count stays: the handshake did happen. Before, ``aclose`` returned at once and
    the give-back met a closed Redis (the count stayed for its window)."""
    limiter = CountingLimiter()
    limiter.hold_user_hits = asyncio.Event()
    stream = EventStream(
        verifier=GoodVerifier(),  # type: ignore[arg-type]
        topics=["crm-changes"],
        path=PATH,
        origins=OriginPolicy(origins=[], patterns=[]),
        metrics=GatewayMetrics(),
        limiter=limiter,  # type: ignore[arg-type]
    )
    transport = httpx.ASGITransport(app=stream.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        opened = await http.get(f"{PATH}/", params=POLLING)
        assert opened.status_code == 200, opened.text
        session = {**POLLING, "sid": json.loads(opened.text[1:])["sid"]}
        post = asyncio.create_task(http.post(f"{PATH}/", params=session, content=f"4{CONNECT}"))
        async with asyncio.timeout(5):
            await limiter.user_counted.wait()  # counted; Redis's answer still on its way
        closing = asyncio.create_task(stream.aclose())
        done, _ = await asyncio.wait({closing}, timeout=0.2)
        assert not done, "aclose returned while a connect was being decided"
        limiter.hold_user_hits.set()
        async with asyncio.timeout(5):
            await closing
        assert [lim.name for lim in limiter.hits] == ["stream_ip", "stream_user"]
        assert [lim.name for lim in limiter.given_back] == ["stream_user"]
        assert stream.metrics.stream_clients._value.get() == 0
        assert engineio_tasks() == []
        posted = await asyncio.wait_for(post, timeout=5)
        assert posted.status_code == 200, posted.text
