"""The event stream: a socket.io server fed from Redis pub/sub, one room per tenant and topic.

Clients connect at ``/api/xynergyos/v2/stream`` with ``auth: {token}``; the token is verified
like any request's, and the connection is refused without a valid one. ``subscribe`` and
``unsubscribe`` take a topic or a list of topics from the allowed set; the socket joins the
room ``<tenant>:<topic>`` of its own verified tenant only. Services publish to
``xynergy:events:<tenant>:<topic>`` (see services.common.events); the listener emits each
message, as event ``<topic>``, to that tenant's room, so tenants never see each other's events.

Connections are rate-limited (the limiter and Redis of the HTTP requests): per client address
from the engine.io handshake, then per verified user at the socket.io connect. The address is
counted at the handshake, not at the connect, because the handshake is what holds a session:
a client that opens engine.io sessions and never sends the socket.io CONNECT held each until
its ping timeout (about 45 s) uncounted, so the connect limit did not bound them. A handshake
past the address limit is answered ``429`` in the gateway's JSON error shape (``limit``,
``retryAfter``, ``Retry-After``); the session's first connect is not counted against the
address again, a later one on the same session is (a CONNECT/DISCONNECT loop). Past the user
limit the connection is refused with ``connect_error`` ``rate_limited`` and data ``{limit,
retryAfter, message}``. When Redis is down the limiter's fail-open/closed rule applies. A
connect refused because its session closed while it was decided, or cancelled then (the
gateway's shutdown), gives back what it counted (its user count; the address count of a later
connect), so it costs the user nothing: a count whose hit was still on its way to or from Redis
when the connect was cancelled included (the hit is waited for, then given back).

A counted session must connect soon: an engine.io session whose socket.io CONNECT has not been
accepted within ``connect_timeout`` seconds of its handshake (none sent, or refused) is closed,
so a client holds at most (address limit / window) x ``connect_timeout`` idle sessions, not one
per handshake of the last ping timeout (about 45 s). The same once its connection ends (the
client's socket.io DISCONNECT, or the server's at token expiry) while the session stays open:
it must connect again within ``connect_timeout`` of the disconnect. python-socketio has no such
setting (the JS server's ``connectTimeout`` does this), so ``_Server`` keeps one timer per
session without a connection: armed at the engine.io open and when a connection ends, dropped
at an accepted connect, at the close and at shutdown.

A connection lives no longer than its token: its deadline is the token's ``exp`` plus the
clock leeway the verifier allows. A timer (every ``stream_expiry_check_seconds``) and every
``subscribe`` check it; past it, the socket gets a ``token_expired`` event saying why, and is
disconnected. The client reconnects with a fresh token (socket.io-client: ``auth`` as a
function that returns the current token).

Ordering and loss: services publish through services.common.events, which numbers each
(tenant, topic)'s messages. An event reaches the client as ``<topic>`` with two arguments, the
payload and ``{"seq": n}``. When the numbers jump (messages the gateway never saw, as while its
subscription was down), a publisher dropped events from its full buffer, or the gateway's own
Redis subscription was lost and re-made, the room first gets a ``resync`` event
``{"topic", "reason": "gap"|"dropped"|"reset"|"interrupted", "missed"}`` (topic null: all):
the client should re-read what it shows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from typing import Any

import engineio
import socketio

from services.common.auth import AuthError, TokenVerifier, token_expiry
from services.common.events import CHANNEL_PATTERN, META, parse_channel, valid_topic
from services.gateway.cors import OriginPolicy
from services.gateway.errors import error_body, send_json
from services.gateway.headers import ForwardedFor, TrustedProxies
from services.gateway.metrics import GatewayMetrics
from services.gateway.ratelimit import Decision, Limit, RateLimiter, RateLimiterUnavailableError

__all__ = ["EventStream"]

log = logging.getLogger("xynergy.gateway.stream")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# set in a handshake's ASGI scope (kept by engine.io as the session's environ["asgi.scope"])
# once its address was counted; the session's first socket.io connect takes it
_ADDRESS_COUNTED = "xynergy.stream_address_counted"
# How long the gateway's shutdown waits, before it closes Redis, for connects still being
# decided (refused once their sessions are closed, they give their counts back) and for
# give-backs under way; each step of a connect is bounded (the limiter's 1 s, the verifier).
CONNECT_GRACE_SECONDS = 2.0

Counted = list[tuple[list[Limit], Decision]]


@dataclass(frozen=True)
class Refusal:
    """Why a connection is refused: ``error`` (``rate_limited``, ...), the HTTP status a
    handshake gets, and ``data``, the ``connect_error``'s data (``limit``, ``retryAfter``,
    ``message``)."""

    status: int
    error: str
    data: dict[str, Any]


def is_handshake(scope: Scope) -> bool:
    """An engine.io handshake: a GET (long-polling) or a WebSocket without a session id; every
    later request of a session names its ``sid``."""
    if scope["type"] == "http" and scope.get("method") != "GET":
        return False
    query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return "sid" not in query


def _room(tenant: str, topic: str) -> str:
    return f"{tenant}:{topic}"


class _EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """engine.io's server, holding every task it starts so that ``shutdown`` ends them.

    engine.io starts a task per session that sleeps a ping interval (25 s) before each PING
    (``AsyncSocket.schedule_ping``) and keeps no reference to it, python-socketio starts its
    event handlers through the same call, and engine.io's own ``shutdown`` stops only its
    service task: so every session open at shutdown left a ping task in the loop for up to
    a ping interval after the gateway stopped. Its ``shutdown`` here closes every session
    as the JS server's ``close()`` does (the CLOSE packet queued, so a pending long poll
    answers with it and a WebSocket's writer sends it and closes), then cancels the tasks
    still running and waits for them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tasks: set[asyncio.Future[Any]] = set()

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        task = super().start_background_task(target, *args, **kwargs)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def shutdown(self) -> None:
        for sock in list(self.sockets.values()):
            try:
                await sock.close(wait=False, reason=self.reason.SERVER_DISCONNECT)
            except Exception:  # one session's close (its disconnect handlers) stops no other
                log.warning("closing a stream session at shutdown failed", exc_info=True)
            sock.queue.put_nowait(None)  # after the CLOSE: a transport's writer stops there
        self.sockets.clear()
        await super().shutdown()  # the service task, when it has started
        running = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


class _Server(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server plus a connect timeout (python-socketio 5.x has none): a session
    without an accepted connection has one timer, armed at its engine.io open and again when
    its connection ends while the session stays open (the client's namespace DISCONNECT, or the
    server's, as at token expiry), dropped when a connect on it is accepted (``connected``) or
    when it closes; a session still without a connection when its timer fires is closed. One
    timer handle per unconnected session, none once connected or closed, none after
    ``shutdown``."""

    def __init__(self, *, connect_timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connect_timeout = connect_timeout
        self._unconnected: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._stopped = False

    def _engineio_server_class(self) -> type[_EngineServer]:
        return _EngineServer

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await super()._handle_eio_connect(eio_sid, environ)
        self._arm(eio_sid)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        await super()._handle_eio_disconnect(eio_sid, reason)
        self.connected(eio_sid)  # gone: nothing left to time out

    async def _handle_disconnect(
        self, eio_sid: str, namespace: str | None, reason: Any = None
    ) -> None:
        """The client's namespace DISCONNECT (also run for each namespace at an engine.io
        close, when the session is closing and gets no timer)."""
        await super()._handle_disconnect(eio_sid, namespace, reason)
        self._disconnected(eio_sid)

    async def disconnect(
        self, sid: str, namespace: str | None = None, ignore_queue: bool = False
    ) -> None:
        """The server ends a connection (token expiry). socket.io clients then close their
        engine.io session; one that keeps it must connect again within ``connect_timeout``."""
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace or "/")
        await super().disconnect(sid, namespace, ignore_queue)
        if eio_sid is not None:
            self._disconnected(eio_sid)

    def connected(self, eio_sid: str | None) -> None:
        """The session ``eio_sid`` has an accepted connection (or is gone): drop its timer."""
        timer = self._unconnected.pop(eio_sid, None) if eio_sid is not None else None
        if timer is not None:
            timer.cancel()

    def is_open(self, eio_sid: str) -> bool:
        """The engine.io session exists and is not closing."""
        sock = self.eio.sockets.get(eio_sid)
        return sock is not None and not sock.closing and not sock.closed

    def _disconnected(self, eio_sid: str) -> None:
        """A connection on the session ended: left open without one, it gets its timer again.
        A running timer is never restarted, so DISCONNECT packets without a connection do not
        extend an unconnected session's time."""
        if eio_sid in self._unconnected or not self.is_open(eio_sid):
            return
        if self.manager.sid_from_eio_sid(eio_sid, "/") is None:
            self._arm(eio_sid)

    def _arm(self, eio_sid: str) -> None:
        self.connected(eio_sid)  # at most one timer per session
        if self._stopped:
            return
        loop = asyncio.get_running_loop()
        self._unconnected[eio_sid] = loop.call_later(self.connect_timeout, self._timed_out, eio_sid)

    def _timed_out(self, eio_sid: str) -> None:
        self._unconnected.pop(eio_sid, None)
        task = asyncio.create_task(self._close_unconnected(eio_sid))
        self._closing.add(task)  # held until done (the loop keeps only weak references)
        task.add_done_callback(self._closing.discard)

    async def _close_unconnected(self, eio_sid: str) -> None:
        """Close the session unless it has a connection: decided here, with no await before the
        close, because a CONNECT may have been taken up since the timer fired."""
        if not self.is_open(eio_sid):
            return
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        if sid is not None:
            if not self.manager.is_connected(sid, "/"):
                # a connect is being decided (token, Redis): judge again once it has been
                self._arm(eio_sid)
            return
        await self._close(eio_sid)

    async def _close(self, eio_sid: str) -> None:
        """Close the session as engine.io's own ping timeout does: the CLOSE packet queued
        without waiting for a poll to take it (``eio.disconnect`` waits, forever for a
        long-polling client that stopped polling), then the session forgotten."""
        sock = self.eio.sockets[eio_sid]
        await sock.close(wait=False, reason=self.eio.reason.SERVER_DISCONNECT)
        self.eio.sockets.pop(eio_sid, None)

    async def shutdown(self) -> None:
        """Stop the timers and let running closes finish, then engine.io (``_EngineServer``:
        every session closed, its tasks ended): a stopped gateway left them in the loop,
        closing sessions for up to ``connect_timeout`` and pinging them for up to a ping
        interval after it stopped."""
        self._stopped = True
        for eio_sid in list(self._unconnected):
            self.connected(eio_sid)
        await asyncio.gather(*self._closing, return_exceptions=True)
        await super().shutdown()


class EventStream:
    def __init__(
        self,
        *,
        verifier: TokenVerifier,
        topics: list[str],
        path: str,
        origins: OriginPolicy,
        metrics: GatewayMetrics,
        leeway_seconds: float = 0.0,
        limiter: RateLimiter | None = None,
        trusted: TrustedProxies | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        """``limiter`` counts connections (per address, then per user; none without one),
        ``trusted`` the proxies whose X-Forwarded-For names the client's address;
        ``connect_timeout`` closes a session without an accepted connect that long after its
        handshake."""
        self.verifier = verifier
        self.limiter = limiter
        self.trusted = trusted or TrustedProxies(())
        self.leeway = leeway_seconds
        self._deadlines: dict[str, float] = {}
        self._last_seq: dict[tuple[str, str], int] = {}
        self.topics = frozenset(t for t in topics if valid_topic(t))
        self.origins = origins
        self.metrics = metrics
        self.sio = _Server(
            connect_timeout=connect_timeout,
            async_mode="asgi",
            cors_allowed_origins=[],
            logger=False,
            engineio_logger=False,
        )
        self.engineio_app = socketio.ASGIApp(self.sio, socketio_path=path.strip("/"))
        self.path = path.rstrip("/")
        self._clients = 0
        self._connecting: set[asyncio.Task[Any]] = set()  # the tasks deciding a connect
        self._giving_back: set[asyncio.Task[None]] = set()
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("subscribe", self._subscribe)
        self.sio.on("unsubscribe", self._unsubscribe)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The stream's ASGI app: engine.io's, behind the address limit on handshakes."""
        if self.limiter is not None and is_handshake(scope):
            refusal = await self._limit_address(scope)
            if refusal is not None:
                await _refuse_handshake(scope, send, refusal)
                return
            scope[_ADDRESS_COUNTED] = True
        await self.engineio_app(scope, receive, send)

    async def _limit_address(self, scope: Scope, counted: Counted | None = None) -> Refusal | None:
        assert self.limiter is not None
        address = ForwardedFor.of_scope(scope, self.trusted)
        limits = self.limiter.policies.stream_connect(client_ip=address.client)
        return await self._decide(limits, counted)

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        counted: Counted = []  # what this connect counted, until it is given back
        task = asyncio.current_task()
        if task is not None:
            self._connecting.add(task)
        try:
            await self._decide_connect(sid, environ, auth, counted)
        except asyncio.CancelledError:
            # cancelled while it was decided (its request's task, as at the server's
            # shutdown): nobody got a connection, so its counts go back, as for session_closed
            await self._give_back(counted)
            raise
        finally:
            if task is not None:
                self._connecting.discard(task)

    async def _decide_connect(
        self, sid: str, environ: dict[str, Any], auth: Any, counted: Counted
    ) -> None:
        origin = environ.get("HTTP_ORIGIN")
        if origin and not self.origins.allows(origin):
            raise socketio.exceptions.ConnectionRefusedError("forbidden", {"check": "origin"})
        scope = environ.get("asgi.scope") or {}
        if self.limiter is not None and not scope.pop(_ADDRESS_COUNTED, False):
            # a later connect on the same engine.io session: the handshake's count is used up
            _refuse_connect(await self._limit_address(scope, counted))
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized", {"check": "missing"})
        try:
            identity = await self.verifier.verify(token)
        except AuthError as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                "unauthorized", {"check": exc.check}
            ) from None
        if self.limiter is not None:
            limits = self.limiter.policies.stream_user(identity)
            _refuse_connect(await self._decide(limits, counted))
        try:
            await self.sio.save_session(
                sid, {"tenant": identity.tenant_id, "user": identity.user_id}
            )
        except KeyError:  # engine.io's answer: the session closed while the connect was decided
            # a refusal makes python-socketio forget the half-made connection; the KeyError
            # escaping left it registered for good (and logged a traceback at ERROR). Nobody
            # got a connection: its counts go back (one per user limit, else the user could
            # open one connection fewer in the window for each such refusal)
            await self._give_back(counted)
            raise socketio.exceptions.ConnectionRefusedError(
                "session_closed", {"message": "the session closed before the connect was decided"}
            ) from None
        exp = token_expiry(token)
        if exp is not None:
            self._deadlines[sid] = exp + self.leeway
        self.sio.connected(self.sio.manager.eio_sid_from_sid(sid, "/"))
        self._clients += 1
        self.metrics.stream_clients.set(self._clients)

    async def aclose(self) -> None:
        """Stop the stream's timers and background work (the gateway's shutdown, before it
        closes Redis): every session closed and engine.io's tasks ended, then up to
        ``CONNECT_GRACE_SECONDS`` for the connects still being decided (python-socketio
        decides a connect in the task of the request that carried it, which this does not
        end: its session closed, it is refused ``session_closed`` and gives its counts back)
        and the give-backs under way. Past that, give-backs still waiting on Redis are
        cancelled and a warning names how many connects and give-backs were left."""
        await self.sio.shutdown()
        waiting = self._connecting | self._giving_back
        if not waiting:
            return
        _, pending = await asyncio.wait(waiting, timeout=CONNECT_GRACE_SECONDS)
        if not pending:
            return
        log.warning(
            "stream connects still being decided at shutdown; their counts may stay",
            extra={
                "fields": {
                    "connects": len(pending & self._connecting),
                    "give_backs": len(pending & self._giving_back),
                }
            },
        )
        cancelled = pending & self._giving_back
        for task in cancelled:
            task.cancel()
        await asyncio.gather(*cancelled, return_exceptions=True)

    async def _decide(self, limits: list[Limit], counted: Counted | None = None) -> Refusal | None:
        """Count a connection against ``limits``; why it is refused past one of them. A count
        made is added to ``counted``, so that it can be given back."""
        try:
            decision = await self._hit(limits, counted)
        except RateLimiterUnavailableError:  # Redis down and failing closed
            self.metrics.redis_errors.labels("ratelimit").inc()
            return Refusal(
                503,
                "rate_limiter_unavailable",
                {"retryAfter": 1, "message": "rate limiting is unavailable; retry in a second"},
            )
        if decision is None:
            return None
        if decision.degraded:
            self.metrics.redis_errors.labels("ratelimit").inc()
        if decision.allowed:
            if counted is not None and decision.counted_at_ms is not None:
                counted.append((limits, decision))
            return None
        self.metrics.rate_limited.labels(self.path).inc()
        who = "address" if decision.name == "stream_ip" else "user"
        retry = max(1, decision.reset_seconds)
        return Refusal(
            429,
            "rate_limited",
            {
                "limit": decision.name,
                "retryAfter": retry,
                "message": f"more than {decision.limit} connections per "
                f"{decision.window_seconds} s from this {who}; retry in {retry} s",
            },
        )

    async def _hit(self, limits: list[Limit], counted: Counted | None) -> Decision | None:
        """The limiter's ``hit``; for a connect (``counted`` given) shielded from the connect's
        cancellation: Redis may have counted a hit whose answer had not arrived yet, and that
        count goes back once the hit lands (``_give_back_landed``, a task ``aclose`` waits
        for). Unshielded, the cancellation ended the hit and its count stayed for the window."""
        assert self.limiter is not None
        if counted is None:
            return await self.limiter.hit(limits)
        hit = asyncio.ensure_future(self.limiter.hit(limits))
        try:
            return await asyncio.shield(hit)
        except asyncio.CancelledError:
            self._in_background(self._give_back_landed(limits, hit))
            raise

    async def _give_back_landed(
        self, limits: list[Limit], hit: asyncio.Future[Decision | None]
    ) -> None:
        """Wait for the hit of a cancelled connect (bounded by the limiter's timeout), then
        give back what it counted: nothing when it was refused or Redis did not answer."""
        assert self.limiter is not None
        try:
            decision = await hit
        except RateLimiterUnavailableError:  # failing closed: nothing was counted
            return
        if decision is not None and decision.allowed and decision.counted_at_ms is not None:
            await self.limiter.give_back(limits, decision)

    async def _give_back(self, counted: Counted) -> None:
        """Take back the counts a refused or cancelled connect made, once (``counted`` is
        emptied). In a task of its own, held until done: a cancellation of the connect (the
        shutdown's, a second one) does not stop it, and ``aclose`` waits for it."""
        if self.limiter is None or not counted:
            return
        limiter, made = self.limiter, list(counted)
        counted.clear()

        async def give_back() -> None:
            for limits, decision in made:
                await limiter.give_back(limits, decision)

        await asyncio.shield(self._in_background(give_back()))

    def _in_background(self, give_back: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a give-back in a task held until done (the loop keeps only weak references),
        which ``aclose`` waits for before the gateway closes Redis."""
        task = asyncio.get_running_loop().create_task(give_back)
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)
        return task

    async def _disconnect(self, sid: str, *args: Any) -> None:
        self._deadlines.pop(sid, None)
        self._clients = max(0, self._clients - 1)
        self.metrics.stream_clients.set(self._clients)

    def _topics(self, data: Any) -> list[str]:
        items = [data] if isinstance(data, str) else data if isinstance(data, list) else []
        return [t for t in items if isinstance(t, str) and t in self.topics]

    async def _subscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        if self._expired(sid, time.time()):
            await self._expire(sid)
            return {"subscribed": [], "error": "token_expired"}
        session = await self.sio.get_session(sid)
        topics = self._topics(data)
        for topic in topics:
            await self.sio.enter_room(sid, _room(session["tenant"], topic))
        return {"subscribed": topics}

    async def _unsubscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        session = await self.sio.get_session(sid)
        topics = self._topics(data)
        for topic in topics:
            await self.sio.leave_room(sid, _room(session["tenant"], topic))
        return {"unsubscribed": topics}

    # -- token expiry ---------------------------------------------------------------------

    def _expired(self, sid: str, now: float) -> bool:
        deadline = self._deadlines.get(sid)
        return deadline is not None and now >= deadline

    async def _expire(self, sid: str) -> None:
        """Tell the socket why, then disconnect it."""
        self._deadlines.pop(sid, None)
        await self.sio.emit(
            "token_expired",
            {
                "reason": "token_expired",
                "message": "the token has expired; reconnect with a fresh token",
            },
            to=sid,
        )
        await self.sio.disconnect(sid)

    async def run_expiry(self, interval: float) -> None:
        """Disconnect sockets whose token has expired, every ``interval`` seconds."""
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            for sid in [s for s in self._deadlines if self._expired(s, now)]:
                try:
                    await self._expire(sid)
                except Exception:
                    log.warning("expiring a socket failed", exc_info=True)

    async def run_listener(self, redis: Any, ready: asyncio.Event | None = None) -> None:
        """Fan Redis messages out to rooms until cancelled; reconnect with backoff."""
        failures = 0
        while True:
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(CHANNEL_PATTERN)
                if ready is not None:
                    ready.set()
                if failures:
                    # messages published while we were away are gone: say so to everyone
                    await self._resync(None, None, "interrupted", None)
                failures = 0
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        await self._deliver(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.metrics.redis_errors.labels("stream").inc()
                delay = min(10.0, 0.2 * 2**failures) * random.uniform(0.5, 1.0)
                log.warning(
                    "event listener lost redis",
                    extra={"fields": {"error": type(exc).__name__, "retry_in": round(delay, 2)}},
                )
                await asyncio.sleep(delay)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    log.debug("pubsub close failed", exc_info=True)

    async def _deliver(self, channel: str | bytes, data: Any) -> None:
        """Emit one published message to its tenant's room, after a resync if one is due."""
        if isinstance(channel, bytes):
            channel = channel.decode()
        parsed = parse_channel(channel)
        if parsed is None or parsed[1] not in self.topics:
            return
        tenant, topic = parsed
        try:
            payload = json.loads(data)
        except (TypeError, ValueError):
            log.warning("non-JSON event dropped", extra={"fields": {"topic": topic}})
            return
        meta = payload.pop(META, None) if isinstance(payload, dict) else None
        seq = meta.get("seq") if isinstance(meta, dict) else None
        if not isinstance(seq, int) or not isinstance(meta, dict):
            await self.sio.emit(
                topic, payload, room=_room(tenant, topic)
            )  # an unnumbered publisher
            return
        await self._check_sequence(tenant, topic, seq)
        if meta.get("resync"):
            dropped = meta.get("dropped")
            await self._resync(
                tenant, topic, "dropped", dropped if isinstance(dropped, int) else None
            )
            return
        await self.sio.emit(topic, (payload, {"seq": seq}), room=_room(tenant, topic))

    async def _check_sequence(self, tenant: str, topic: str, seq: int) -> None:
        key = (tenant, topic)
        last = self._last_seq.get(key)
        if len(self._last_seq) >= 100_000 and last is None:
            self._last_seq.clear()  # bounded; a forgotten topic just starts over
        self._last_seq[key] = seq
        if last is None or seq == last + 1:
            return
        if seq > last + 1:
            await self._resync(tenant, topic, "gap", seq - last - 1)
        else:  # the counter went back: Redis lost it (restart without persistence)
            await self._resync(tenant, topic, "reset", None)

    async def _resync(
        self, tenant: str | None, topic: str | None, reason: str, missed: int | None
    ) -> None:
        body = {"topic": topic, "reason": reason, "missed": missed}
        if tenant is None or topic is None:
            await self.sio.emit("resync", body)
        else:
            await self.sio.emit("resync", body, room=_room(tenant, topic))


def _refuse_connect(refusal: Refusal | None) -> None:
    """Refuse a socket.io connect with ``refusal``'s ``connect_error``, if there is one."""
    if refusal is not None:
        raise socketio.exceptions.ConnectionRefusedError(refusal.error, refusal.data)


async def _refuse_handshake(scope: Scope, send: Send, refusal: Refusal) -> None:
    """Answer a refused handshake: the JSON error with ``Retry-After`` over HTTP; a WebSocket
    is closed before it is accepted (the server answers 403: ASGI has no status for it)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    data = refusal.data
    body = error_body(
        refusal.status,
        refusal.error,
        data["message"],
        **{k: v for k, v in data.items() if k != "message"},
    )
    retry_after = str(data["retryAfter"]).encode()
    await send_json(send, refusal.status, body, [(b"retry-after", retry_after)])
