"""The stream contract, with the real JavaScript socket.io client run by node."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from services.common.events import EventPublisher, publish_event, sequence_key

from .conftest import (
    NODE_DIR,
    GatewayFactory,
    RedisServer,
    RunningGateway,
    make_jwt,
    wait_for,
)

STREAM_PATH = "/api/xynergyos/v2/stream"
TOPICS = "slack-messages,email-updates,crm-changes"


class JsClient:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, url: str, token: str) -> JsClient:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is missing: run `make deps` (hack/deps/node-tools.sh)")
        proc = await asyncio.create_subprocess_exec(
            node,
            str(NODE_DIR / "stream-client.mjs"),
            url,
            STREAM_PATH,
            token,
            TOPICS,
            cwd=NODE_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def command(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()

    async def next_of(self, kind: str) -> dict[str, Any]:
        """Read lines until one of type ``kind`` (bounded by the test timeout)."""
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout=30)
            if not raw:
                raise AssertionError(f"client exited before {kind}; saw {self.lines}")
            line = json.loads(raw)
            self.lines.append(line)
            if line["type"] == kind:
                return line

    async def events_until_final(self) -> list[dict[str, Any]]:
        events = []
        while True:
            line = await self.next_of("event")
            events.append(line)
            if line["data"].get("final"):
                return events

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
        await self.proc.wait()


async def _connected(url: str, token: str) -> JsClient:
    client = await JsClient.start(url, token)
    await client.next_of("connect")
    await client.next_of("subscribed")
    return client


async def test_js_client_receives_only_its_tenants_events(
    gateway: RunningGateway, redis_client: aioredis.Redis
) -> None:
    a = await JsClient.start(gateway.url, make_jwt(user_id="sa", tenant_id="tenant-a"))
    b = await JsClient.start(gateway.url, make_jwt(user_id="sb", tenant_id="tenant-b"))
    try:
        for client in (a, b):
            await client.next_of("connect")
            ack = await client.next_of("subscribed")
            assert ack["ack"] == {"subscribed": TOPICS.split(",")}
        await publish_event(
            redis_client, tenant_id="tenant-a", topic="crm-changes", payload={"n": "a1"}
        )
        await publish_event(
            redis_client, tenant_id="tenant-b", topic="slack-messages", payload={"n": "b1"}
        )
        await publish_event(
            redis_client, tenant_id="tenant-c", topic="crm-changes", payload={"n": "c1"}
        )
        await redis_client.publish("xynergy:events:tenant-a:not-a-topic", json.dumps({"n": "x"}))
        await publish_event(
            redis_client,
            tenant_id="tenant-a",
            topic="email-updates",
            payload={"n": "a2", "final": True},
        )
        await publish_event(
            redis_client,
            tenant_id="tenant-b",
            topic="email-updates",
            payload={"n": "b2", "final": True},
        )
        got_a = await a.events_until_final()
        got_b = await b.events_until_final()
        assert [(e["event"], e["data"]["n"]) for e in got_a] == [
            ("crm-changes", "a1"),
            ("email-updates", "a2"),
        ]
        assert [(e["event"], e["data"]["n"]) for e in got_b] == [
            ("slack-messages", "b1"),
            ("email-updates", "b2"),
        ]
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize(
    ("token", "check"),
    [
        pytest.param("-", "missing", id="no-token"),
        pytest.param(make_jwt(ttl=-3600), "expired", id="expired"),
        pytest.param(make_jwt(secret="wrong" * 10), "signature", id="bad-signature"),
    ],
)
async def test_js_client_is_refused_without_a_valid_token(
    gateway: RunningGateway, token: str, check: str
) -> None:
    client = await JsClient.start(gateway.url, token)
    try:
        error = await client.next_of("connect_error")
        assert error["message"] == "unauthorized", client.lines
        assert error["data"] == {"check": check}
        assert not [line for line in client.lines if line["type"] == "connect"]
    finally:
        await client.close()


async def _clear_stream_limits(redis_client: aioredis.Redis) -> None:
    async for key in redis_client.scan_iter(match="xyn:rl:sio:*"):
        await redis_client.delete(key)  # earlier tests' connections from this address


async def test_connections_past_the_address_or_user_limit_are_refused(
    gateway_factory: GatewayFactory, redis_client: aioredis.Redis
) -> None:
    """A client opening connections in a loop is refused, per user first here (2: the real
    client's connect_error), then per address (3; every test connects from 127.0.0.1): the
    address is counted at the engine.io handshake, so the real client sees its transport
    refused with 429 (the body: test_bare_engineio_handshakes_count_against_the_address)."""
    await _clear_stream_limits(redis_client)
    settings = {"stream_connect_limit_per_minute": 3, "stream_user_connect_limit_per_minute": 2}
    async with gateway_factory(**settings) as gw:
        loop_user = make_jwt(user_id="looper", tenant_id="loop-co")
        accepted = [await _connected(gw.url, loop_user) for _ in range(2)]
        refused: list[dict[str, Any]] = []
        try:
            for token in (loop_user, make_jwt(user_id="other", tenant_id="loop-co")):
                client = await JsClient.start(gw.url, token)
                try:
                    refused.append(await client.next_of("connect_error"))
                    assert not [line for line in client.lines if line["type"] == "connect"]
                finally:
                    await client.close()
        finally:
            for client in accepted:
                await client.close()
    user, address = refused
    assert (user["message"], user["data"]["limit"]) == ("rate_limited", "stream_user")
    assert (address["message"], address["description"]) == ("xhr poll error", 429)


async def test_bare_engineio_handshakes_count_against_the_address(
    gateway_factory: GatewayFactory, redis_client: aioredis.Redis
) -> None:
    """A client that opens engine.io sessions (long-polling handshakes) and never sends the
    socket.io CONNECT held each session until its ping timeout, and none was counted: the
    limit bounded connects, not sessions. Every handshake now counts against the address, a
    real client's connect on its own session is not counted twice, and past the limit the
    handshake itself is refused."""
    await _clear_stream_limits(redis_client)
    handshake = {"EIO": "4", "transport": "polling"}
    async with gateway_factory(stream_connect_limit_per_minute=3) as gw:
        half_open = []
        for _ in range(2):
            opened = await gw.http.get(f"{STREAM_PATH}/", params=handshake)
            assert opened.status_code == 200, opened.text
            assert opened.text.startswith("0")  # engine.io's OPEN packet
            half_open.append(json.loads(opened.text[1:])["sid"])
        # the third session is a real client's, counted once (handshake and connect)
        client = await _connected(gw.url, make_jwt(user_id="honest", tenant_id="half-co"))
        await client.close()
        refused = await gw.http.get(f"{STREAM_PATH}/", params=handshake)
        assert refused.status_code == 429
        body = refused.json()
        assert (body["error"], body["limit"], body["status"]) == ("rate_limited", "stream_ip", 429)
        assert body["message"].startswith("more than 3 connections per 60 s from this address")
        assert int(refused.headers["retry-after"]) == body["retryAfter"] >= 1
        assert gw.app.metrics.rate_limited.labels(STREAM_PATH)._value.get() == 1
        # the two half-open sessions were accepted, and what refused the fourth was the count
        assert set(half_open) <= set(gw.app.stream.sio.eio.sockets)


async def test_a_session_without_a_connection_is_closed_after_the_connect_timeout(
    gateway_factory: GatewayFactory, redis_client: aioredis.Redis
) -> None:
    """A counted engine.io session that never sends the socket.io CONNECT (or whose CONNECT
    was refused) used to live until engine.io's ping timeout (about 45 s); it is now closed
    XYNERGY_GATEWAY_STREAM_CONNECT_TIMEOUT_SECONDS after its handshake, and a session with an
    accepted connection is left alone."""
    await _clear_stream_limits(redis_client)
    handshake = {"EIO": "4", "transport": "polling"}
    async with gateway_factory(stream_connect_timeout_seconds=0.5) as gw:
        server = gw.app.stream.sio

        async def open_session() -> str:
            opened = await gw.http.get(f"{STREAM_PATH}/", params=handshake)
            assert opened.status_code == 200, opened.text
            return str(json.loads(opened.text[1:])["sid"])

        def closed(sid: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return sid not in server.eio.sockets and server.get_environ(sid) is None

            return check

        silent = await open_session()
        refused = await open_session()
        connect = await gw.http.post(
            f"{STREAM_PATH}/", params={**handshake, "sid": refused}, content='40{"token":"x"}'
        )
        assert connect.status_code == 200, connect.text
        client = await _connected(gw.url, make_jwt(user_id="prompt", tenant_id="prompt-co"))
        try:
            later = await open_session()  # opened after the client's connect was accepted
            for sid in (silent, refused, later):
                await wait_for(closed(sid), within=10, what=f"session {sid} to be closed")
            # the client's session is older than `later`, which timed out: it was kept
            assert len(server.eio.sockets) == 1
            assert gw.app.metrics.stream_clients._value.get() == 1
            assert not server._unconnected  # no timer left behind
            await publish_event(
                redis_client, tenant_id="prompt-co", topic="crm-changes", payload={"n": 1}
            )
            assert (await client.next_of("event"))["data"] == {"n": 1}
            gone = await gw.http.get(f"{STREAM_PATH}/", params={**handshake, "sid": silent})
            assert gone.status_code == 400, gone.text
        finally:
            await client.close()


POLLING = {"EIO": "4", "transport": "polling"}


class PollingSession:
    """A raw engine.io long-polling session (EIO 4) carrying socket.io packets: a client that
    speaks the protocol without socket.io-client's manners (which closes its engine.io session
    when its last connection ends), so it keeps the session after a DISCONNECT."""

    def __init__(self, http: httpx.AsyncClient, sid: str) -> None:
        self.http = http
        self.sid = sid
        self.received: list[str] = []

    @classmethod
    async def open(cls, gw: RunningGateway) -> PollingSession:
        opened = await gw.http.get(f"{STREAM_PATH}/", params=POLLING)
        assert opened.status_code == 200, opened.text
        return cls(gw.http, str(json.loads(opened.text[1:])["sid"]))

    async def post(self, payload: str) -> None:
        """Engine.io packets; answered once python-socketio has handled them."""
        posted = await self.http.post(
            f"{STREAM_PATH}/", params={**POLLING, "sid": self.sid}, content=payload
        )
        assert posted.status_code == 200, posted.text

    async def send(self, packet: str) -> None:
        """One socket.io packet (``0`` CONNECT, ``1`` DISCONNECT, ...) in an engine.io MESSAGE."""
        await self.post("4" + packet)

    async def receive(self) -> str:
        """The next socket.io packet from the server (long polls; engine.io pings answered)."""
        while not self.received:
            polled = await self.http.get(f"{STREAM_PATH}/", params={**POLLING, "sid": self.sid})
            assert polled.status_code == 200, polled.text
            for packet in polled.text.split("\x1e"):
                if packet == "2":
                    await self.post("3")
                elif packet.startswith("4"):
                    self.received.append(packet[1:])
        return self.received.pop(0)

    async def connect(self, token: str) -> str:
        """Send a socket.io CONNECT with ``token``: the server's CONNECT (``0{"sid"}``) or
        CONNECT_ERROR (``4{"message", "data"}``)."""
        await self.send("0" + json.dumps({"token": token}))
        return await self.receive()


def _closed(server: Any, sid: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return sid not in server.eio.sockets and server.get_environ(sid) is None

    return check


async def test_a_session_whose_connection_ended_must_connect_again_within_the_timeout(
    gateway_factory: GatewayFactory, redis_client: aioredis.Redis
) -> None:
    """A client that connected with a valid token and then sent the socket.io DISCONNECT (not
    an engine.io close) kept its engine.io session, with no timer, until its ping timeout
    (about 45 s), free to CONNECT on it again. The session now gets the connect timeout again
    when its connection ends, an accepted CONNECT on it drops it, and every CONNECT after the
    first is counted against the address (here the fourth count is refused)."""
    await _clear_stream_limits(redis_client)
    settings = {"stream_connect_timeout_seconds": 1, "stream_connect_limit_per_minute": 3}
    async with gateway_factory(**settings) as gw:
        server = gw.app.stream.sio
        token = make_jwt(user_id="cycler", tenant_id="cycle-co")
        cycling = await PollingSession.open(gw)  # the address counted: 1
        assert (await cycling.connect(token)).startswith("0")  # its first connect: not again
        await cycling.send("1")  # DISCONNECT: the engine.io session stays
        assert gw.app.metrics.stream_clients._value.get() == 0
        assert (await cycling.connect(token)).startswith("0")  # a later one is: 2
        later = await PollingSession.open(gw)  # 3, after the reconnect was accepted
        await wait_for(_closed(server, later.sid), within=10, what="the later session's timeout")
        # the timer the DISCONNECT armed (older than `later`'s) was dropped at the reconnect
        assert cycling.sid in server.eio.sockets
        assert gw.app.metrics.stream_clients._value.get() == 1
        await cycling.send("1")
        refused = await cycling.connect(token)  # 4: past the address limit
        assert refused.startswith("4"), refused
        error = json.loads(refused[1:])
        assert (error["message"], error["data"]["limit"]) == ("rate_limited", "stream_ip")
        await wait_for(_closed(server, cycling.sid), within=10, what="the idle session's timeout")
        assert not server._unconnected  # no timer left behind
        assert gw.app.metrics.stream_clients._value.get() == 0
        gone = await gw.http.get(f"{STREAM_PATH}/", params={**POLLING, "sid": cycling.sid})
        assert gone.status_code == 400, gone.text


async def test_a_session_the_server_disconnected_is_closed_after_the_connect_timeout(
    gateway_factory: GatewayFactory, redis_client: aioredis.Redis
) -> None:
    """At token expiry the server ends the connection with a socket.io DISCONNECT; a client
    that keeps its engine.io session (socket.io-client closes it) is closed a connect timeout
    later, as after its own DISCONNECT, not at its ping timeout."""
    await _clear_stream_limits(redis_client)
    settings = {"stream_connect_timeout_seconds": 1, "stream_expiry_check_seconds": 0.2}
    async with gateway_factory(auth_leeway=0, **settings) as gw:
        server = gw.app.stream.sio
        session = await PollingSession.open(gw)
        token = make_jwt(user_id="keeper", tenant_id="keep-co", ttl=3)
        assert (await session.connect(token)).startswith("0")
        expired = await session.receive()
        assert json.loads(expired[1:])[0] == "token_expired", expired  # an EVENT packet
        assert await session.receive() == "1"  # the server's DISCONNECT
        await wait_for(_closed(server, session.sid), within=10, what="the idle session's timeout")
        assert not server._unconnected
        assert gw.app.metrics.stream_clients._value.get() == 0


async def test_a_session_closed_while_its_connect_is_decided_leaves_no_connection(
    gateway_factory: GatewayFactory, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A client sends its CONNECT and, on another request, closes its engine.io session while
    the connect is decided (here Redis stalls the user limit's count; a ping timeout or the
    connect timeout can close it too). The connect handler's save_session then raised
    KeyError: python-socketio logged a traceback at ERROR and kept the half-made connection
    registered for good. It is now refused, and forgotten."""
    async with gateway_factory(redis_url=own_redis.url) as gw:
        server = gw.app.stream.sio
        session = await PollingSession.open(gw)

        async def deciding() -> bool:
            sid = server.manager.sid_from_eio_sid(session.sid, "/")
            return sid is not None and not server.manager.is_connected(sid, "/")

        token = make_jwt(user_id="quitter", tenant_id="quit-co")
        own_redis.pause()
        try:
            connecting = asyncio.create_task(session.send("0" + json.dumps({"token": token})))
            await wait_for(deciding, within=10, what="the connect to be taken up")
            await session.post("1")  # engine.io CLOSE
            assert not server.is_open(session.sid)
            assert await deciding()  # the close came while the connect was decided
        finally:
            own_redis.resume()
        with caplog.at_level(logging.WARNING):
            await connecting
        assert server.manager.sid_from_eio_sid(session.sid, "/") is None
        assert gw.app.metrics.stream_clients._value.get() == 0
        assert not server._unconnected
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_connect_refused_for_its_closed_session_gives_its_user_count_back(
    gateway_factory: GatewayFactory, redis_client: aioredis.Redis
) -> None:
    """A session that closes while its CONNECT is decided, after the user limit counted it
    (in Redis), has the connect refused with ``session_closed``; that count used to stay, so
    the user could open one connection fewer in the window for each such refusal. It is
    given back: the user can still open the limit's full number of connections."""
    await _clear_stream_limits(redis_client)
    async with gateway_factory(stream_user_connect_limit_per_minute=2) as gw:
        server = gw.app.stream.sio
        limiter = gw.app.stream.limiter
        assert limiter is not None
        counted = limiter.hit
        quitting = await PollingSession.open(gw)
        closed_after_count: list[Any] = []

        async def hit_then_close(limits: Any) -> Any:
            """The real count, then the client's engine.io CLOSE before the connect goes on."""
            decision = await counted(limits)
            if limits and limits[0].name == "stream_user" and not closed_after_count:
                await quitting.post("1")
                closed_after_count.append(decision)
            return decision

        limiter.hit = hit_then_close  # type: ignore[method-assign]
        token = make_jwt(user_id=f"quitter-{time.time_ns()}", tenant_id="quit-co")
        await quitting.send("0" + json.dumps({"token": token}))
        await wait_for(_closed(server, quitting.sid), within=10, what="the session to close")
        assert [d.allowed for d in closed_after_count] == [True]  # it had been counted
        assert server.manager.sid_from_eio_sid(quitting.sid, "/") is None  # refused
        for n in range(2):
            session = await PollingSession.open(gw)
            answer = await session.connect(token)
            assert answer.startswith("0"), (n, answer)  # not `rate_limited` on the second
        third = await PollingSession.open(gw)
        refused = json.loads((await third.connect(token))[1:])
        assert (refused["message"], refused["data"]["limit"]) == ("rate_limited", "stream_user")


async def test_a_stopped_gateway_leaves_no_stream_timer_or_task(
    gateway_factory: GatewayFactory, redis_client: aioredis.Redis
) -> None:
    """The connect timers of sessions open at shutdown, engine.io's background task (which
    python-socketio leaves to the application to stop) and each open session's ping task
    (which engine.io's shutdown does not stop) outlived a stopped gateway: in the tests'
    shared event loop a stopped gateway still closed sessions afterwards, and pinged them for
    up to a ping interval (25 s)."""
    await _clear_stream_limits(redis_client)
    async with gateway_factory(stream_connect_timeout_seconds=30) as gw:
        server = gw.app.stream.sio
        session = await PollingSession.open(gw)
        connected = await PollingSession.open(gw)
        token = make_jwt(user_id="stayer", tenant_id="stay-co")
        assert (await connected.connect(token)).startswith("0")
        timer = server._unconnected[session.sid]
        service = server.eio.service_task_handle
        assert service is not None
        assert not service.done()
        pings = [t for t in _tasks_of(server.eio) if "_send_ping" in repr(t.get_coro())]
        assert len(pings) == 2  # one per session
    assert timer.cancelled()
    assert not server._unconnected
    assert service.done()
    assert not server.eio.sockets
    assert _tasks_of(server.eio) == []
    assert all(ping.done() for ping in pings)


def _tasks_of(eio: Any) -> list[asyncio.Task[Any]]:
    """Unfinished tasks running code of the engine.io server ``eio`` or of its sessions."""
    found = []
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        owner = frame.f_locals.get("self") if frame is not None else None
        if not task.done() and (owner is eio or getattr(owner, "server", None) is eio):
            found.append(task)
    return found


# -- connections do not outlive their token (issue 20 item 6) ---------------------------------


async def test_a_connection_is_closed_when_its_token_expires(
    gateway_factory: GatewayFactory, redis_client: aioredis.Redis
) -> None:
    async with gateway_factory(auth_leeway=0, stream_expiry_check_seconds=0.2) as gw:
        client = await _connected(gw.url, make_jwt(user_id="short", tenant_id="exp-co", ttl=3))
        try:
            await publish_event(
                redis_client, tenant_id="exp-co", topic="crm-changes", payload={"n": 1}
            )
            assert (await client.next_of("event"))["data"]["n"] == 1  # it works meanwhile
            expired = await client.next_of("event")  # the timer fires, no request needed
            assert expired["event"] == "token_expired"
            assert expired["data"]["reason"] == "token_expired"
            assert "fresh token" in expired["data"]["message"]
            assert (await client.next_of("disconnect"))["reason"] == "io server disconnect"
        finally:
            await client.close()
        fresh = await _connected(gw.url, make_jwt(user_id="short", tenant_id="exp-co"))
        try:
            await publish_event(
                redis_client, tenant_id="exp-co", topic="crm-changes", payload={"final": True}
            )
            assert (await fresh.next_of("event"))["data"] == {"final": True}
        finally:
            await fresh.close()


async def test_a_subscribe_after_expiry_is_refused(gateway_factory: GatewayFactory) -> None:
    # the timer is far away: only the check on subscribe can notice
    async with gateway_factory(auth_leeway=0, stream_expiry_check_seconds=3600) as gw:
        # long enough for the node client to connect on a loaded machine (2 s was not:
        # the connect itself was refused as expired)
        exp = int(time.time()) + 10
        client = await _connected(gw.url, make_jwt(user_id="late", exp=exp))
        try:

            async def past_expiry() -> bool:
                return time.time() > exp

            await wait_for(past_expiry, within=20, what="the token to expire")
            await client.command(cmd="subscribe", topics=["crm-changes"])
            expired = await client.next_of("event")
            assert expired["event"] == "token_expired"
            assert (await client.next_of("disconnect"))["reason"] == "io server disconnect"
            acks = [line for line in client.lines if line["type"] == "subscribed"]
            assert len(acks) == 1  # only the first, from before the expiry
        finally:
            await client.close()


# -- no silent loss while Redis stalls (issue 20 item 8) --------------------------------------


async def _events(client: JsClient) -> list[tuple[str, Any, Any]]:
    return [(e["event"], e["data"], e["meta"]) for e in await client.events_until_final()]


async def test_events_published_while_redis_stalls_arrive_in_order_with_sequence_numbers(
    gateway_factory: GatewayFactory, own_redis: RedisServer
) -> None:
    publisher = aioredis.Redis.from_url(own_redis.url)
    async with gateway_factory(redis_url=own_redis.url) as gw:
        client = await _connected(gw.url, make_jwt(user_id="s1", tenant_id="stall-co"))
        try:
            own_redis.pause()
            try:
                async with asyncio.timeout(20):  # publishing must not hang on a stalled Redis
                    for i in range(20):
                        await publish_event(
                            publisher, tenant_id="stall-co", topic="crm-changes", payload={"n": i}
                        )
            finally:
                own_redis.resume()
            await publish_event(
                publisher, tenant_id="stall-co", topic="crm-changes", payload={"final": True}
            )
            got = await _events(client)
        finally:
            await client.close()
            await publisher.aclose()
    assert [data for _, data, _ in got] == [{"n": i} for i in range(20)] + [{"final": True}]
    seqs = [meta["seq"] for _, _, meta in got]
    assert seqs == list(range(seqs[0], seqs[0] + 21))  # per topic, no gap


async def test_an_overflowing_buffer_tells_subscribers_to_resync(
    gateway_factory: GatewayFactory, own_redis: RedisServer
) -> None:
    redis = aioredis.Redis.from_url(own_redis.url)
    publisher = EventPublisher(redis, buffer_size=5, attempt_timeout=0.5)
    async with gateway_factory(redis_url=own_redis.url) as gw:
        client = await _connected(gw.url, make_jwt(user_id="s2", tenant_id="flood-co"))
        try:
            own_redis.pause()
            try:
                for i in range(20):
                    await publisher.publish(
                        tenant_id="flood-co", topic="crm-changes", payload={"n": i}
                    )
            finally:
                own_redis.resume()

            async def drained() -> bool:
                return publisher.buffered == 0

            await wait_for(drained, within=20, what="the buffer to drain")
            await publisher.publish(
                tenant_id="flood-co", topic="crm-changes", payload={"final": True}
            )
            got = await _events(client)
        finally:
            await client.close()
            await publisher.aclose()
            await redis.aclose()
    resync = [(data, meta) for event, data, meta in got if event == "resync"]
    assert resync == [({"topic": "crm-changes", "reason": "dropped", "missed": 15}, None)]
    kept = [data["n"] for event, data, _ in got if event == "crm-changes" and "n" in data]
    assert kept == list(range(15, 20))  # the oldest were dropped, the rest kept in order
    assert got[0][0] == "resync"  # told before the events that were kept


async def test_a_gap_in_the_sequence_is_announced(
    gateway: RunningGateway, redis_client: aioredis.Redis
) -> None:
    client = await _connected(gateway.url, make_jwt(user_id="s3", tenant_id="gap-co"))
    try:
        await publish_event(redis_client, tenant_id="gap-co", topic="email-updates", payload={})
        await client.next_of("event")
        # three messages the gateway never saw (as when its subscription was down)
        await redis_client.incrby(sequence_key("gap-co", "email-updates"), 3)
        await publish_event(
            redis_client, tenant_id="gap-co", topic="email-updates", payload={"final": True}
        )
        got = await _events(client)
    finally:
        await client.close()
    assert [(event, data) for event, data, _ in got] == [
        ("resync", {"topic": "email-updates", "reason": "gap", "missed": 3}),
        ("email-updates", {"final": True}),
    ]
