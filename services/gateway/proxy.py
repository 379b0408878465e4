"""The proxy: a plain ASGI handler that authenticates, limits, caches and forwards.

It is not a FastAPI route on purpose: every request through the gateway passes here, so it
works on the raw ASGI scope and streams bodies both ways without building framework objects.
Order of checks: path (400) -> route (404) -> authentication (401) -> body size (413) ->
rate limit (429) and cache lookup, in one Redis round trip (HIT) -> breaker (503) ->
upstream (502/504 on transport errors).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from services.common.auth import AuthError, TokenVerifier, bearer_token
from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.telemetry import new_request_id, valid_request_id
from services.common.tenancy import Identity
from services.gateway.accesslog import AccessLog
from services.gateway.breaker import Breaker, BreakerBoard, BreakerOpenError, BreakerState
from services.gateway.cache import CachedResponse, ResponseCache, cache_ttl
from services.gateway.gate import Gate
from services.gateway.metrics import GatewayMetrics
from services.gateway.ratelimit import RateLimiterUnavailableError
from services.gateway.routing import Match, PathError, RouteTable, normalise_path
from services.gateway.settings import GatewaySettings

__all__ = ["IDENTITY_HEADER_PREFIXES", "Proxy", "TableHolder"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

errlog = logging.getLogger("xynergy.gateway.proxy")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Headers a client could use to pretend to be someone; never forwarded upstream.
IDENTITY_HEADER_PREFIXES = (
    "x-xynergy-",
    "x-user",
    "x-tenant",
    "x-auth",
    "x-identity",
    "x-roles",
    "x-email",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-goog-authenticated",
    "x-endpoint-api-userinfo",
    "x-apigateway-api-userinfo",
    "x-remote-user",
    "remote-user",
)
_DROP_REQUEST = HOP_BY_HOP | {"host", "authorization", "cookie", "x-request-id", "forwarded"}
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_RETRY_STATUS = frozenset({502, 503, 504})
_BUFFER_BODY_BYTES = 64 * 1024
_SAFE_PATH = "/:@!$&'()*+,;=-._~"
_REDIS_TIMEOUT = 1.0


class _BodyTooLargeError(Exception):
    pass


class _ClientGoneError(Exception):
    pass


@dataclass
class _BodyState:
    """What happened to the request body while the upstream client was sending it."""

    too_large: bool = False
    client_gone: bool = False


@dataclass
class TableHolder:
    """The current route table; replaced whole by the route source task."""

    table: RouteTable
    loaded: bool = False


def _json_body(status: int, error: str, message: str, **extra: Any) -> bytes:
    return json.dumps({"error": error, "message": message, "status": status, **extra}).encode()


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
        access_log: AccessLog | None = None,
    ) -> None:
        self.settings = settings
        self.access_log = access_log
        self.routes = routes
        self.verifier = verifier
        self.signer = signer
        self.gate = gate
        self.cache = cache
        self.breakers = breakers
        self.client = client
        self.metrics = metrics
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    # -- helpers -------------------------------------------------------------------------

    async def _respond(
        self,
        send: Send,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        content_type: bytes = b"application/json",
    ) -> None:
        headers = [
            *headers,
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        t = self._timeouts.get(seconds)
        if t is None:
            t = aiohttp.ClientTimeout(total=seconds, connect=min(seconds, 5.0))
            self._timeouts[seconds] = t
        return t

    # -- the handler ---------------------------------------------------------------------

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Handle one request; ``extra_headers`` (CORS) go on every response."""
        started = time.perf_counter()
        method: str = scope["method"]
        hdrs: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1")
            if name not in hdrs:
                hdrs[name] = v.decode("latin-1")
        rid = hdrs.get("x-request-id")
        if not valid_request_id(rid):
            rid = new_request_id()
        assert rid is not None
        base_headers = [(b"x-request-id", rid.encode())]
        if extra_headers:
            base_headers.extend(extra_headers)
        status = 500
        route_label = "unmatched"
        identity: Identity | None = None
        try:
            try:
                path = normalise_path(scope["path"])
            except PathError as exc:
                status = 400
                await self._respond(send, 400, _json_body(400, "bad_path", str(exc)), base_headers)
                return
            match = self.routes.table.match(path)
            if match is None:
                status = 404
                await self._respond(
                    send, 404, _json_body(404, "not_found", "no route for this path"), base_headers
                )
                return
            route_label = match.route.prefix
            try:
                identity = await self.verifier.verify(bearer_token(hdrs.get("authorization")))
            except AuthError as exc:
                status = 401
                challenge = (
                    f'Bearer realm="xynergy", error="invalid_token", '
                    f'error_description="{exc.check}"'
                )
                if exc.check == "missing":
                    challenge = 'Bearer realm="xynergy"'
                await self._respond(
                    send,
                    401,
                    _json_body(401, "unauthorized", exc.message, check=exc.check),
                    [*base_headers, (b"www-authenticate", challenge.encode())],
                )
                return
            status = await self._authenticated(
                scope,
                receive,
                send,
                method=method,
                hdrs=hdrs,
                match=match,
                identity=identity,
                base_headers=base_headers,
            )
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.request_done(route_label, method, status, elapsed)
            if self.access_log is not None:
                self.access_log.request(
                    request_id=rid,
                    method=method,
                    path=scope["path"],
                    route=route_label,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                    tenant=identity.tenant_id if identity else None,
                    user=identity.user_id if identity else None,
                )

    async def _authenticated(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        method: str,
        hdrs: dict[str, str],
        match: Match,
        identity: Identity,
        base_headers: list[tuple[bytes, bytes]],
    ) -> int:
        route = match.route
        settings = self.settings
        limit = route.rate_limit_per_minute or settings.rate_limit_per_minute

        length = hdrs.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await self._respond(
                    send,
                    400,
                    _json_body(400, "bad_request", "invalid Content-Length"),
                    base_headers,
                )
                return 400
            if declared > settings.max_body_bytes:
                await self._respond(
                    send, 413, _json_body(413, "too_large", "request body too large"), base_headers
                )
                return 413
        has_body = (length is not None and length != "0") or "transfer-encoding" in hdrs

        query = scope.get("query_string", b"").decode("latin-1")
        cache = self.cache
        cache_control = hdrs.get("cache-control", "")
        cache_eligible = (
            cache is not None
            and method == "GET"
            and not has_body
            and "range" not in hdrs
            and "no-cache" not in cache_control
            and "no-store" not in cache_control
        )
        try:
            decision, hit, gen, cache_ok = await self.gate.check(
                identity,
                scope=route.prefix,
                limit=limit,
                lookup=(match.resource, match.upstream_path, query) if cache_eligible else None,
            )
        except RateLimiterUnavailableError:
            self.metrics.redis_errors.labels("ratelimit").inc()
            await self._respond(
                send,
                503,
                _json_body(503, "rate_limiter_unavailable", "rate limiting is unavailable"),
                [*base_headers, (b"retry-after", b"1")],
            )
            return 503
        if decision.degraded:
            self.metrics.redis_errors.labels("ratelimit").inc()
        rl_headers = [(k.encode(), v.encode()) for k, v in decision.headers()]
        base_headers = base_headers + rl_headers
        if not decision.allowed:
            self.metrics.rate_limited.labels(route.prefix).inc()
            await self._respond(
                send,
                429,
                _json_body(429, "rate_limited", f"more than {limit} requests per window"),
                base_headers,
            )
            return 429
        if cache_eligible:
            if not cache_ok:
                self.metrics.cache_result("error")
                cache_eligible = False
            elif hit is not None:
                self.metrics.cache_result("hit")
                await self._send_cached(send, hit, base_headers)
                return hit.status
            else:
                self.metrics.cache_result("miss")

        breaker = self.breakers.get(route.upstream)
        try:
            breaker.before_call()
        except BreakerOpenError:
            return await self._circuit_open(send, breaker, base_headers)

        try:
            # Build the upstream request.
            out_headers: list[tuple[str, str]] = []
            connection_tokens = {t.strip().lower() for t in hdrs.get("connection", "").split(",")}
            drop_request = _DROP_REQUEST if not has_body else _DROP_REQUEST | {"content-length"}
            for k, v in scope["headers"]:
                name = k.decode("latin-1")
                if (
                    name in drop_request
                    or name in connection_tokens
                    or name.startswith(IDENTITY_HEADER_PREFIXES)
                    or name == "x-forwarded-for"
                ):
                    continue
                out_headers.append((name, v.decode("latin-1")))
            client_addr = scope.get("client")
            xff = hdrs.get("x-forwarded-for")
            if client_addr:
                xff = f"{xff}, {client_addr[0]}" if xff else client_addr[0]
            if xff:
                out_headers.append(("x-forwarded-for", xff))
            out_headers.append(("x-forwarded-proto", scope.get("scheme", "http")))
            if "host" in hdrs:
                out_headers.append(("x-forwarded-host", hdrs["host"]))
            out_headers.append(("x-request-id", base_headers[0][1].decode()))
            out_headers.append((IDENTITY_HEADER, self.signer.sign(identity)))

            url = route.upstream + quote(match.upstream_path, safe=_SAFE_PATH)
            if query:
                url += "?" + query
            timeout = self._timeout(route.timeout_seconds or settings.default_timeout_seconds)

            body_state = _BodyState()
            content: bytes | AsyncIterator[bytes] | None = None
            replayable = True
            if has_body:
                small = length is not None and int(length) <= _BUFFER_BODY_BYTES
                try:
                    if small:
                        content = await self._read_body(receive, body_state)
                    else:
                        content = self._stream_body(receive, body_state)
                        replayable = False
                except _BodyTooLargeError:
                    await self._respond(
                        send,
                        413,
                        _json_body(413, "too_large", "request body too large"),
                        base_headers,
                    )
                    return 413
                except _ClientGoneError:
                    return 499

            attempts = 1 + (settings.retries if (method in _IDEMPOTENT and replayable) else 0)
            response: aiohttp.ClientResponse | None = None
            for attempt in range(attempts):
                if attempt:
                    if breaker.state is BreakerState.OPEN:
                        # The failures so far opened it: stop retrying, fail fast.
                        return await self._circuit_open(send, breaker, base_headers)
                    self.metrics.upstream_retries.labels(route.prefix).inc()
                    backoff = settings.retry_backoff_seconds * (2 ** (attempt - 1))
                    await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                try:
                    response = await self.client.request(
                        method,
                        url,
                        headers=out_headers,
                        data=content,
                        timeout=timeout,
                        allow_redirects=False,
                    )
                except Exception as exc:
                    if body_state.too_large:
                        await self._respond(
                            send,
                            413,
                            _json_body(413, "too_large", "request body too large"),
                            base_headers,
                        )
                        return 413
                    if body_state.client_gone:
                        return 499
                    if not isinstance(exc, asyncio.TimeoutError | aiohttp.ClientError):
                        raise
                    breaker.record_failure()
                    if attempt + 1 < attempts:
                        continue
                    if isinstance(exc, asyncio.TimeoutError):
                        await self._respond(
                            send,
                            504,
                            _json_body(504, "upstream_timeout", "upstream timed out"),
                            base_headers,
                        )
                        return 504
                    errlog.warning(
                        "upstream unreachable",
                        extra={"fields": {"route": route.prefix, "error": type(exc).__name__}},
                    )
                    await self._respond(
                        send,
                        502,
                        _json_body(502, "bad_gateway", "upstream unreachable"),
                        base_headers,
                    )
                    return 502
                if response.status in _RETRY_STATUS:
                    breaker.record_failure()
                    if attempt + 1 < attempts:
                        response.release()
                        continue
                else:
                    breaker.record_success()
                break
            assert response is not None

            try:
                status = response.status
                resp_headers: list[tuple[bytes, bytes]] = []
                drop = HOP_BY_HOP | {
                    t.strip().lower() for t in response.headers.get("connection", "").split(",")
                }
                for k, v in response.raw_headers:
                    name = k.lower().decode("latin-1")
                    if name in drop or name == "x-request-id":
                        continue
                    resp_headers.append((k, v))
                resp_headers.extend(base_headers)

                if method in _WRITES and status < 400 and cache is not None:
                    try:
                        async with asyncio.timeout(_REDIS_TIMEOUT):
                            await cache.invalidate(identity.tenant_id, match.resource)
                    except Exception:
                        self.metrics.redis_errors.labels("cache").inc()
                        errlog.warning("cache invalidation failed", exc_info=True)

                if cache_eligible and status == 200 and "cache-control" in response.headers:
                    assert cache is not None
                    lowered = {k.lower(): v for k, v in response.headers.items()}
                    ttl, public = cache_ttl(lowered, max_ttl=settings.cache_max_ttl_seconds)
                    size = response.content_length
                    if ttl > 0 and size is not None and size <= settings.cache_max_body_bytes:
                        body = await response.read()
                        resp_headers.append((b"x-cache", b"MISS"))
                        await send(
                            {
                                "type": "http.response.start",
                                "status": status,
                                "headers": resp_headers,
                            }
                        )
                        stored = [
                            (k.decode("latin-1"), v.decode("latin-1"))
                            for k, v in response.raw_headers
                            if k.lower().decode("latin-1") not in drop
                            and k.lower() not in (b"x-request-id", b"date")
                        ]
                        try:
                            async with asyncio.timeout(_REDIS_TIMEOUT):
                                await cache.put(
                                    identity,
                                    gen=gen,
                                    path=match.upstream_path,
                                    query=query,
                                    response=CachedResponse(status, stored, body, 0),
                                    ttl=ttl,
                                    public=public,
                                )
                        except Exception:
                            self.metrics.redis_errors.labels("cache").inc()
                            errlog.warning("cache store failed", exc_info=True)
                        # stored before the body goes out: a client that asks again as soon as
                        # it has the response must get the HIT (read-your-response caching)
                        await send({"type": "http.response.body", "body": body})
                        return status
                if cache_eligible:
                    resp_headers.append((b"x-cache", b"MISS"))
                await send(
                    {"type": "http.response.start", "status": status, "headers": resp_headers}
                )
                if method == "HEAD":
                    await send({"type": "http.response.body", "body": b""})
                    return status
                async for chunk in response.content.iter_any():
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return status
            finally:
                response.release()
        finally:
            # An early return (413, client gone) or an error must not leave a half-open
            # breaker waiting forever for its trial call to finish.
            breaker.release_trial()

    async def _circuit_open(
        self, send: Send, breaker: Breaker, base_headers: list[tuple[bytes, bytes]]
    ) -> int:
        retry_after = max(1, int(breaker.retry_after() + 0.999))
        await self._respond(
            send,
            503,
            _json_body(503, "upstream_unavailable", "the upstream is failing; circuit open"),
            [*base_headers, (b"retry-after", str(retry_after).encode())],
        )
        return 503

    async def _send_cached(
        self, send: Send, hit: CachedResponse, base_headers: list[tuple[bytes, bytes]]
    ) -> None:
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
        limit = self.settings.max_body_bytes
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                state.client_gone = True
                raise _ClientGoneError
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                state.too_large = True
                raise _BodyTooLargeError
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
