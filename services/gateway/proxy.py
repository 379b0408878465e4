"""The proxy: a plain ASGI handler that authenticates, limits, caches and forwards.

It is not a FastAPI route on purpose: every request through the gateway passes here, so it
works on the raw ASGI scope and streams bodies both ways without building framework objects.
A request goes through named stages, each of which either lets it on or refuses it with the
gateway's JSON error (:class:`RefusalError`):

path (400) -> route (404) -> authentication (401, or 429 past the unauthenticated limit) ->
body size (400/413) -> rate limits (429) and cache lookup, in one Redis round trip (HIT) ->
cache invalidation before a write -> breaker (503) -> upstream (502/504 on transport errors)
-> relay the response (cache store, invalidation after a write).

A public route (``spec.routes[].public``, e.g. Slack's Events API webhook, which cannot send a
token) skips authentication: it is limited per client address and route, body-limited, never
cached, and its upstream gets no identity (client-claimed identity headers are dropped as on
every route). The gateway's own endpoints that must sit behind the same limits (the OAuth
callback) go through :meth:`Proxy.serve_local`: the same stages, then a local ASGI app instead
of the upstream.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from services.common.auth import AuthError, TokenVerifier, bearer_token
from services.common.identity import InternalIdentitySigner
from services.common.idtokens import IdTokens
from services.common.telemetry import new_request_id, valid_request_id
from services.common.tenancy import Identity
from services.gateway.breaker import Breaker, BreakerBoard, BreakerOpenError, BreakerState
from services.gateway.cache import (
    CachedResponse,
    Invalidations,
    ResponseCache,
    cache_ttl,
    joined_headers,
)
from services.gateway.errors import error_body, send_json
from services.gateway.gate import Gate, GateResult
from services.gateway.headers import (
    ForwardedFor,
    TrustedProxies,
    response_headers,
    upstream_request_headers,
)
from services.gateway.metrics import GatewayMetrics
from services.gateway.ratelimit import Decision, RateLimiterUnavailableError
from services.gateway.routing import Match, PathError, Route, RouteTable, normalise_path
from services.gateway.settings import GatewaySettings

__all__ = ["Proxy", "RefusalError", "TableHolder"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

errlog = logging.getLogger("xynergy.gateway.proxy")
access = logging.getLogger("xynergy.gateway.access")
"""One JSON line per request (services.common.telemetry's formatter): request id, method,
path without its query, route, status, ms, tenant, user; never headers or tokens."""

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_RETRY_STATUS = frozenset({502, 503, 504})
_BUFFER_BODY_BYTES = 64 * 1024
_SAFE_PATH = "/:@!$&'()*+,;=-._~"
_REDIS_TIMEOUT = 1.0
_CLIENT_GONE = 499


class RefusalError(Exception):
    """A stage refuses the request: answer ``status`` with the JSON error body."""

    def __init__(
        self, status: int, error: str, message: str, *, headers: Headers | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(status, error, message, **extra)
        self.headers = headers or []


class _ClientGoneError(Exception):
    pass


def _too_large() -> RefusalError:
    return RefusalError(413, "too_large", "request body too large")


def _too_slow() -> RefusalError:
    return RefusalError(
        408,
        "body_timeout",
        "request body not received in time",
        headers=[(b"connection", b"close")],
    )


@dataclass
class _BodyState:
    """What happened to the request body while the upstream client was sending it."""

    too_large: bool = False
    too_slow: bool = False
    client_gone: bool = False


@dataclass
class TableHolder:
    """The current route table; replaced whole by the route source task."""

    table: RouteTable
    loaded: bool = False


@dataclass
class Exchange:
    """One request on its way through the stages, and what they learnt about it."""

    scope: Scope
    receive: Receive
    send: Send
    method: str
    hdrs: dict[str, str]
    request_id: str
    headers: Headers
    """Headers every response to this request carries (request id, CORS, RateLimit-*)."""
    forwarded: ForwardedFor
    match: Match | None = None
    identity: Identity | None = None
    has_body: bool = False
    lookup: bool = False
    gate: GateResult | None = None
    status: int = 500
    public: bool = False
    """The route takes no token: no identity, no cache, limits per client address."""
    local: tuple[Route, App] | None = None
    """A gateway endpoint served after the limits instead of an upstream (the OAuth callback)."""
    started: bool = False
    """The response's status line went to the client (an error can no longer replace it)."""

    @property
    def route(self) -> Match:
        assert self.match is not None
        return self.match

    @property
    def who(self) -> Identity:
        assert self.identity is not None
        return self.identity

    @property
    def query(self) -> str:
        return str(self.scope.get("query_string", b"").decode("latin-1"))


def _first_headers(scope: Scope) -> tuple[dict[str, str], list[str]]:
    """The first value of each request header, and every X-Forwarded-For value in order."""
    hdrs: dict[str, str] = {}
    xff: list[str] = []
    for k, v in scope["headers"]:
        name = k.decode("latin-1")
        if name == "x-forwarded-for":
            xff.append(v.decode("latin-1"))
        if name not in hdrs:
            hdrs[name] = v.decode("latin-1")
    return hdrs, xff


def _cacheable_request(ex: Exchange) -> bool:
    cache_control = ex.hdrs.get("cache-control", "")
    return (
        ex.method == "GET"
        and not ex.has_body
        and "range" not in ex.hdrs
        and "no-cache" not in cache_control
        and "no-store" not in cache_control
    )


def _declared_length(hdrs: dict[str, str], limit: int) -> int | None:
    """The request's Content-Length, or None; 400 when invalid, 413 over ``limit``."""
    length = hdrs.get("content-length")
    if length is None:
        return None
    try:
        declared = int(length)
    except ValueError:
        declared = -1
    if declared < 0:
        raise RefusalError(400, "bad_request", "invalid Content-Length")
    if declared > limit:
        raise _too_large()
    return declared


def _auth_refusal(exc: AuthError, headers: Headers) -> RefusalError:
    challenge = f'Bearer realm="xynergy", error="invalid_token", error_description="{exc.check}"'
    if exc.check == "missing":
        challenge = 'Bearer realm="xynergy"'
    return RefusalError(
        401,
        "unauthorized",
        exc.message,
        headers=[*headers, (b"www-authenticate", challenge.encode())],
        check=exc.check,
    )


def is_public(route: Route) -> bool:
    """The route takes no token (the API's ``spec.routes[].public``)."""
    return route.public


def _rate_headers(decision: Decision | None) -> Headers:
    if decision is None:
        return []
    return [(k.encode(), v.encode()) for k, v in decision.headers()]


class Proxy:
    def __init__(
        self,
        *,
        settings: GatewaySettings,
        routes: TableHolder,
        verifier: TokenVerifier,
        signer: InternalIdentitySigner,
        gate: Gate,
        cache: ResponseCache | None,
        breakers: BreakerBoard,
        client: aiohttp.ClientSession,
        metrics: GatewayMetrics,
        access_log: bool = True,
        invalidations: Invalidations | None = None,
        id_tokens: IdTokens | None = None,
    ) -> None:
        self.settings = settings
        self.access_log = access_log
        self.routes = routes
        self.verifier = verifier
        self.signer = signer
        self.gate = gate
        self.cache = cache
        self.invalidations = invalidations
        if cache is not None and invalidations is None:
            self.invalidations = Invalidations(cache, timeout=_REDIS_TIMEOUT)
        self.breakers = breakers
        self.client = client
        self.metrics = metrics
        self.trusted = TrustedProxies(settings.trusted_proxies)
        self.id_tokens = id_tokens
        """Google ID tokens for Cloud Run upstreams (services/common/idtokens.py)."""
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    # -- the handler ---------------------------------------------------------------------

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Handle one request; ``extra_headers`` (CORS) go on every response."""
        await self._handle(self._exchange(scope, receive, send, extra_headers))

    async def serve_local(
        self, scope: Scope, receive: Receive, send: Send, extra: Headers, *, route: Route, app: App
    ) -> None:
        """A gateway endpoint behind the same stages (auth, body size, rate limits), served
        by ``app`` instead of an upstream; ``route`` names it for limits and metrics."""
        ex = self._exchange(scope, receive, send, extra)
        ex.local = (route, app)
        await self._handle(ex)

    async def _handle(self, ex: Exchange) -> None:
        started = time.perf_counter()
        send = ex.send
        try:
            ex.status = await self._pipeline(ex)
        except RefusalError as refusal:
            ex.status = refusal.status
            await send_json(send, refusal.status, refusal.body, refusal.headers or ex.headers)
        finally:
            self._done(ex, time.perf_counter() - started)

    def _exchange(
        self, scope: Scope, receive: Receive, send: Send, extra: Headers | None
    ) -> Exchange:
        hdrs, xff = _first_headers(scope)
        rid = hdrs.get("x-request-id")
        if not valid_request_id(rid):
            rid = new_request_id()
        assert rid is not None
        headers = [(b"x-request-id", rid.encode())]
        if extra:
            headers.extend(extra)
        client = scope.get("client")
        forwarded = ForwardedFor.resolve(
            peer=client[0] if client else None, xff=xff, trusted=self.trusted
        )
        return Exchange(scope, receive, send, scope["method"], hdrs, rid, headers, forwarded)

    async def _pipeline(self, ex: Exchange) -> int:
        """The stages in order; a stage that refuses raises RefusalError."""
        self._route(ex)
        if ex.public:
            self._body_size(ex)
            await self._limit_public(ex)
        else:
            await self._authenticate(ex)
            ex.match = self.routes.table.stick(ex.route, ex.who.user_id)
            self._body_size(ex)
            hit = await self._limit_and_look_up(ex)
            if hit is not None:
                await self._send_cached(ex.send, hit, ex.headers)
                return hit.status
        if ex.local is not None:
            return await self._serve_local(ex, ex.local[1])
        await self._invalidate_before_write(ex)
        breaker = self.breakers.get(ex.route.route.upstream)
        try:
            breaker.before_call()
        except BreakerOpenError:
            raise self._circuit_open(breaker, ex.headers) from None
        try:
            response = await self._forward(ex, breaker)
            try:
                status = await self._relay(ex, response)
            except (TimeoutError, aiohttp.ClientError) as exc:
                return self._cut_short(ex, breaker, exc)
            finally:
                response.release()
            if status not in _RETRY_STATUS:
                breaker.record_success()  # after the body: a stall mid-body is a failure
            return status
        except _ClientGoneError:
            return _CLIENT_GONE
        finally:
            # An early return (413, client gone) or an error must not leave a half-open
            # breaker waiting forever for its trial call to finish.
            breaker.release_trial()

    def _done(self, ex: Exchange, elapsed: float) -> None:
        route_label = ex.match.route.prefix if ex.match is not None else "unmatched"
        self.metrics.request_done(route_label, ex.method, ex.status, elapsed)
        if self.access_log and access.isEnabledFor(logging.INFO):
            identity = ex.identity
            fields = {
                "request_id": ex.request_id,
                "method": ex.method,
                "path": ex.scope["path"],
                "route": route_label,
                "status": ex.status,
                "ms": round(elapsed * 1000, 2),
                "tenant": identity.tenant_id if identity else None,
                "user": identity.user_id if identity else None,
            }
            access.info("request", extra={"fields": fields})

    # -- stages before the upstream ------------------------------------------------------

    def _route(self, ex: Exchange) -> None:
        try:
            path = normalise_path(ex.scope["path"])
        except PathError as exc:
            raise RefusalError(400, "bad_path", str(exc)) from None
        if ex.local is not None:
            ex.match = Match(route=ex.local[0], upstream_path=path, resource=ex.local[0].prefix)
            return
        ex.match = self.routes.table.match(path)
        if ex.match is None:
            raise RefusalError(404, "not_found", "no route for this path")
        ex.public = is_public(ex.match.route)

    async def _authenticate(self, ex: Exchange) -> None:
        if sum(name == b"authorization" for name, _ in ex.scope["headers"]) > 1:
            # a proxy in front may read another of them than we do: refuse, never pick one
            raise RefusalError(
                400, "bad_request", "more than one Authorization header: send exactly one"
            )
        try:
            ex.identity = await self.verifier.verify(bearer_token(ex.hdrs.get("authorization")))
        except AuthError as exc:
            decision = await self._count_unauthenticated(ex)
            headers = ex.headers + _rate_headers(decision)
            if decision is not None and not decision.allowed:
                raise self._rate_limited(ex, decision, headers) from None
            raise _auth_refusal(exc, headers) from None

    async def _count_unauthenticated(self, ex: Exchange) -> Decision | None:
        """Count a request without a valid token against its address's limits."""
        limiter = self.gate.limiter
        limits = limiter.policies.unauthenticated_limits(client_ip=ex.forwarded.client)
        try:
            decision = await limiter.hit(limits)
        except RateLimiterUnavailableError:
            return None  # the 401 stands; failing closed would only change its status
        if decision is not None and decision.degraded:
            self.metrics.redis_errors.labels("ratelimit").inc()
        return decision

    def _body_size(self, ex: Exchange) -> None:
        length = _declared_length(ex.hdrs, self.settings.max_body_bytes)
        ex.has_body = (length is not None and length != 0) or "transfer-encoding" in ex.hdrs

    async def _limit_and_look_up(self, ex: Exchange) -> CachedResponse | None:
        """Rate limits and cache lookup in one Redis call; the HIT to serve, if any."""
        match, identity = ex.route, ex.who
        ex.lookup = self.cache is not None and ex.local is None and _cacheable_request(ex)
        if ex.lookup and self._bypassed(identity, match.resource):
            ex.lookup = False
            ex.headers = [*ex.headers, (b"x-cache", b"BYPASS")]
        limits = self.gate.limiter.policies.authenticated(
            identity,
            client_ip=ex.forwarded.client,
            scope=match.route.prefix,
            per_user=match.route.rate_limit_per_minute,
        )
        lookup = (match.resource, match.upstream_path, ex.query) if ex.lookup else None
        try:
            result = await self.gate.check(identity, limits=limits, lookup=lookup)
        except RateLimiterUnavailableError:
            raise self._limiter_unavailable(ex) from None
        ex.gate = result
        self._apply_decision(ex, result.decision)
        return self._cache_outcome(ex, result)

    async def _limit_public(self, ex: Exchange) -> None:
        """A public route's limits: per client address and route, and the address cap."""
        route = ex.route.route
        limits = self.gate.limiter.policies.public(
            client_ip=ex.forwarded.client,
            scope=route.prefix,
            per_address=route.rate_limit_per_minute,
        )
        try:
            decision = await self.gate.limiter.hit(limits)
        except RateLimiterUnavailableError:
            raise self._limiter_unavailable(ex) from None
        if decision is not None:
            self._apply_decision(ex, decision)

    def _apply_decision(self, ex: Exchange, decision: Decision) -> None:
        """RateLimit-* headers on the exchange; 429 when a limit refuses."""
        if decision.degraded:
            self.metrics.redis_errors.labels("ratelimit").inc()
        ex.headers = ex.headers + _rate_headers(decision)
        if not decision.allowed:
            raise self._rate_limited(ex, decision, ex.headers)

    def _limiter_unavailable(self, ex: Exchange) -> RefusalError:
        self.metrics.redis_errors.labels("ratelimit").inc()
        return RefusalError(
            503,
            "rate_limiter_unavailable",
            "rate limiting is unavailable",
            headers=[*ex.headers, (b"retry-after", b"1")],
        )

    def _bypassed(self, identity: Identity, resource: str) -> bool:
        inv = self.invalidations
        return inv is not None and inv.blocked(identity.tenant_id, resource)

    def _cache_outcome(self, ex: Exchange, result: GateResult) -> CachedResponse | None:
        if not ex.lookup:
            return None
        if not result.cache_usable:
            self.metrics.cache_result("error")
            ex.lookup = False
            return None
        self.metrics.cache_result("hit" if result.hit is not None else "miss")
        return result.hit

    def _rate_limited(self, ex: Exchange, decision: Decision, headers: Headers) -> RefusalError:
        label = ex.match.route.prefix if ex.match is not None else "unmatched"
        self.metrics.rate_limited.labels(label).inc()
        return RefusalError(
            429,
            "rate_limited",
            f"more than {decision.limit} requests per {decision.window_seconds} s "
            f"({decision.name} limit)",
            headers=headers,
            limit=decision.name,
        )

    async def _invalidate_before_write(self, ex: Exchange) -> None:
        """Bump the resource's cache generation before a write goes upstream, so no entry
        stored before the write outlives it (see services.gateway.cache)."""
        if ex.method in _WRITES and not ex.public and self.invalidations is not None:
            await self.invalidations.bump(ex.who.tenant_id, ex.route.resource)

    # -- the upstream ----------------------------------------------------------------------

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        """The route timeout as a read-idle one (Kong's read_timeout): the upstream must send
        its response head, then each next piece of the body, within ``seconds``; a stream that
        keeps sending (SSE chat) is never cut however long it runs."""
        t = self._timeouts.get(seconds)
        if t is None:
            t = aiohttp.ClientTimeout(total=None, connect=min(seconds, 5.0), sock_read=seconds)
            self._timeouts[seconds] = t
        return t

    async def _request_body(
        self, ex: Exchange, state: _BodyState
    ) -> tuple[bytes | AsyncIterator[bytes] | None, bool]:
        """(content, replayable): small bodies are read whole so that they can be retried."""
        if not ex.has_body:
            return None, True
        length = ex.hdrs.get("content-length")
        if length is not None and int(length) <= _BUFFER_BODY_BYTES:
            try:
                return await self._read_body(ex.receive, state), True
            except _BodyTooLargeError:
                raise _too_large() from None
            except _BodyTooSlowError:
                raise _too_slow() from None
        return self._stream_body(ex.receive, state), False

    async def _forward(self, ex: Exchange, breaker: Breaker) -> aiohttp.ClientResponse:
        """Send the request upstream, retrying idempotent ones; the response to relay."""
        match, settings = ex.route, self.settings
        out_headers = upstream_request_headers(
            ex.scope["headers"],
            hdrs=ex.hdrs,
            has_body=ex.has_body,
            forwarded=ex.forwarded,
            scheme=ex.scope.get("scheme", "http"),
            request_id=ex.request_id,
            identity_token=None if ex.public else self.signer.sign(ex.who),
        )
        url = match.route.upstream + quote(match.upstream_path, safe=_SAFE_PATH)
        if ex.query:
            url += "?" + ex.query
        if self.id_tokens is not None:
            caller = await self.id_tokens.header(match.route.upstream)
            if caller is not None:
                out_headers.append(caller)
        body_state = _BodyState()
        content, replayable = await self._request_body(ex, body_state)
        attempts = 1 + (settings.retries if (ex.method in _IDEMPOTENT and replayable) else 0)
        timeout = self._timeout(match.route.timeout_seconds or settings.default_timeout_seconds)
        for attempt in range(attempts):
            if attempt:
                await self._before_retry(ex, breaker, attempt)
            try:
                response = await self.client.request(
                    ex.method,
                    url,
                    headers=out_headers,
                    data=content,
                    timeout=timeout,
                    allow_redirects=False,
                )
            except Exception as exc:
                self._upstream_failed(exc, body_state, breaker, ex, last=attempt + 1 == attempts)
                continue
            if response.status not in _RETRY_STATUS:
                return response  # success is recorded once its body has been relayed
            breaker.record_failure()
            if attempt + 1 == attempts:
                return response
            response.release()
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _before_retry(self, ex: Exchange, breaker: Breaker, attempt: int) -> None:
        if breaker.state is BreakerState.OPEN:
            # The failures so far opened it: stop retrying, fail fast.
            raise self._circuit_open(breaker, ex.headers)
        self.metrics.upstream_retries.labels(ex.route.route.prefix).inc()
        backoff = self.settings.retry_backoff_seconds * (2 ** (attempt - 1))
        await asyncio.sleep(backoff * random.uniform(0.5, 1.5))

    def _upstream_failed(
        self, exc: Exception, body: _BodyState, breaker: Breaker, ex: Exchange, *, last: bool
    ) -> None:
        """A transport error: refuse (413, 504, 502) or return to let the caller retry."""
        if body.too_large:
            raise _too_large() from None
        if body.too_slow:
            raise _too_slow() from None
        if body.client_gone:
            raise _ClientGoneError from None
        if not isinstance(exc, asyncio.TimeoutError | aiohttp.ClientError):
            raise exc
        breaker.record_failure()
        if not last:
            return
        if isinstance(exc, asyncio.TimeoutError):
            raise RefusalError(504, "upstream_timeout", "upstream timed out", headers=ex.headers)
        errlog.warning(
            "upstream unreachable",
            extra={"fields": {"route": ex.route.route.prefix, "error": type(exc).__name__}},
        )
        raise RefusalError(502, "bad_gateway", "upstream unreachable", headers=ex.headers)

    def _cut_short(self, ex: Exchange, breaker: Breaker, exc: Exception) -> int:
        """The upstream stalled (silent for the route timeout) or broke off after its status
        line. Before anything went to the client it gets the 504/502 error, and either is a
        breaker failure; after, the response is left unfinished, so the server closes the
        connection and the client cannot take a cut body for a whole one, and only a break
        counts for the breaker: a long silence in a stream that had started (a slow SSE
        answer) says nothing about the upstream's health. The status returned is for metrics
        and the access log."""
        timeout = isinstance(exc, TimeoutError)
        if not (timeout and ex.started):
            breaker.record_failure()
        errlog.warning(
            "upstream stalled mid-response" if timeout else "upstream broke off mid-response",
            extra={
                "fields": {
                    "route": ex.route.route.prefix,
                    "error": type(exc).__name__,
                    "response_started": ex.started,
                }
            },
        )
        if not ex.started:
            if timeout:
                raise RefusalError(
                    504, "upstream_timeout", "upstream timed out", headers=ex.headers
                )
            raise RefusalError(502, "bad_gateway", "upstream response broken", headers=ex.headers)
        return 504 if timeout else 502

    # -- relaying the response -------------------------------------------------------------

    async def _relay(self, ex: Exchange, response: aiohttp.ClientResponse) -> int:
        status = response.status
        kept = response_headers(response.raw_headers, response.headers.get("connection"))
        out = kept + ex.headers
        inv = None if ex.public else self.invalidations
        if ex.method in _WRITES and status < 400 and inv is not None:
            await inv.bump(ex.who.tenant_id, ex.route.resource)
        if ex.lookup:
            out.append((b"x-cache", b"MISS"))
            ttl, public = self._storable(response)
            if ttl > 0:
                return await self._relay_and_store(ex, response, out, kept, ttl, public)
        ex.started = True
        await ex.send({"type": "http.response.start", "status": status, "headers": out})
        if ex.method == "HEAD":
            await ex.send({"type": "http.response.body", "body": b""})
            return status
        await self._stream(ex.send, response.content)
        return status

    @staticmethod
    async def _stream(send: Send, content: aiohttp.StreamReader) -> None:
        """The upstream body as it arrives, its last chunk sent as the final message: a body
        that came whole goes out in one message, so the server writes the response at once
        (no streamed response and no empty closing message)."""
        while True:
            chunk = await content.readany()
            last = content.at_eof()
            if chunk or last:
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if last:
                return

    def _storable(self, response: aiohttp.ClientResponse) -> tuple[int, bool]:
        """(ttl, public) of a response the cache may keep; ttl 0 when it may not."""
        if response.status != 200 or "cache-control" not in response.headers:
            return 0, False
        joined = joined_headers(response.headers.items())
        ttl, public = cache_ttl(joined, max_ttl=self.settings.cache_max_ttl_seconds)
        size = response.content_length
        if size is None or size > self.settings.cache_max_body_bytes:
            return 0, False
        return ttl, public

    async def _relay_and_store(
        self,
        ex: Exchange,
        response: aiohttp.ClientResponse,
        out: Headers,
        kept: Headers,
        ttl: int,
        public: bool,
    ) -> int:
        body = await response.read()
        ex.started = True
        await ex.send({"type": "http.response.start", "status": response.status, "headers": out})
        stored = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in kept if k.lower() != b"date"
        ]
        entry = CachedResponse(response.status, stored, body, 0)
        await self._store(ex, entry, ttl=ttl, public=public)
        # stored before the body goes out: a client that asks again as soon as it has the
        # response must get the HIT (read-your-response caching)
        await ex.send({"type": "http.response.body", "body": body})
        return response.status

    async def _store(self, ex: Exchange, entry: CachedResponse, *, ttl: int, public: bool) -> None:
        assert self.cache is not None
        assert ex.gate is not None
        if self._bypassed(ex.who, ex.route.resource):
            return  # a write's invalidation is unconfirmed: keep nothing for the resource
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT):
                await self.cache.put(
                    ex.who,
                    gen=ex.gate.generation,
                    path=ex.route.upstream_path,
                    query=ex.query,
                    response=entry,
                    ttl=ttl,
                    public=public,
                )
        except Exception:
            self.metrics.redis_errors.labels("cache").inc()
            errlog.warning("cache store failed", exc_info=True)

    async def _serve_local(self, ex: Exchange, app: App) -> int:
        """Hand the request to a gateway endpoint; its response gets the exchange's headers."""
        status = 500

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *ex.headers]
            await ex.send(message)

        await app({**ex.scope, "path": ex.route.upstream_path}, ex.receive, send)
        return status

    # -- small helpers -----------------------------------------------------------------------

    def _circuit_open(self, breaker: Breaker, headers: Headers) -> RefusalError:
        retry_after = max(1, int(breaker.retry_after() + 0.999))
        return RefusalError(
            503,
            "upstream_unavailable",
            "the upstream is failing; circuit open",
            headers=[*headers, (b"retry-after", str(retry_after).encode())],
        )

    async def _send_cached(self, send: Send, hit: CachedResponse, base_headers: Headers) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hit.headers]
        headers.extend(base_headers)
        headers.append((b"x-cache", b"HIT"))
        headers.append((b"age", str(hit.age).encode()))
        await send({"type": "http.response.start", "status": hit.status, "headers": headers})
        await send({"type": "http.response.body", "body": hit.body})

    async def _read_body(self, receive: Receive, state: _BodyState) -> bytes:
        chunks = []
        async for chunk in self._stream_body(receive, state):
            chunks.append(chunk)
        return b"".join(chunks)

    async def _stream_body(self, receive: Receive, state: _BodyState) -> AsyncIterator[bytes]:
        """The body's chunks, refused past `max_body_bytes` and when it arrives too slowly
        (slowloris): it must be in by `body_timeout_seconds` after its start, a deadline
        extended by one second per `body_min_rate_bytes` received (Apache mod_reqtimeout's
        body rule), so a stalled or dribbling client is cut off and an honest one is not."""
        limit, settings = self.settings.max_body_bytes, self.settings
        deadline = asyncio.get_running_loop().time() + settings.body_timeout_seconds
        received = 0
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                state.too_slow = True
                raise _BodyTooSlowError from None
            if message["type"] == "http.disconnect":
                state.client_gone = True
                raise _ClientGoneError
            chunk = message.get("body", b"")
            received += len(chunk)
            deadline += len(chunk) / settings.body_min_rate_bytes
            if received > limit:
                state.too_large = True
                raise _BodyTooLargeError
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


class _BodyTooLargeError(Exception):
    pass


class _BodyTooSlowError(Exception):
    pass
