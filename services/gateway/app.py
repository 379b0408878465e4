"""The gateway's application factory: ``create_app()`` wires settings to parts.

The returned ASGI app dispatches on the path: ``/api/xynergyos/v2/stream`` goes to the
socket.io server, the OAuth callback (``/api/v2/oauth/``) through the proxy's stages to the
FastAPI app, every other ``/api/...`` path to the proxy, and the rest (``/healthz``,
``/readyz``, ``/metrics``, ``/docs``) to a small FastAPI app, which also owns the lifespan:
it starts the route-table task and the event listener, and closes clients on shutdown.
Starlette's CORSMiddleware wraps all of it. Run it with ``python -m services.gateway`` or
``uvicorn --factory services.gateway.app:create_app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.middleware.cors import CORSMiddleware

from services.common.auth import TokenVerifier, build_verifier
from services.common.identity import InternalIdentitySigner
from services.common.idtokens import IdTokens
from services.common.settings import AuthSettings, InternalIdentitySettings
from services.common.telemetry import configure_logging
from services.gateway.breaker import BreakerBoard
from services.gateway.cache import Invalidations, ResponseCache
from services.gateway.cors import OriginPolicy
from services.gateway.errors import install_error_handlers, json_errors
from services.gateway.gate import Gate
from services.gateway.metrics import GatewayMetrics
from services.gateway.oauth import PREFIX as OAUTH_PREFIX
from services.gateway.oauth import oauth_router
from services.gateway.proxy import Proxy, Receive, Scope, Send, TableHolder
from services.gateway.ratelimit import Policies, RateLimiter
from services.gateway.redishealth import RedisHealth
from services.gateway.redismux import mux_for_url
from services.gateway.routes_file import FileRouteSource
from services.gateway.routing import PathError, Route, RouteSource, RouteTable, normalise_path
from services.gateway.settings import GatewaySettings
from services.gateway.stream import EventStream

__all__ = ["Gateway", "create_app", "default_route_source"]

log = logging.getLogger("xynergy.gateway")

_EXPOSE = [
    "x-request-id",
    "x-cache",
    "retry-after",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
    # what domain services send back (optimistic concurrency, created resources, replays)
    "etag",
    "location",
    "idempotent-replayed",
]


def default_route_source(settings: GatewaySettings) -> RouteSource | None:
    """The cluster source inside a cluster (or when asked), else the file source, if any."""
    kind = settings.route_source
    if kind == "auto":
        kind = "cluster" if os.environ.get("KUBERNETES_SERVICE_HOST") else "file"
    if kind == "cluster":
        from services.gateway.routes_cluster import ClusterRouteSource, default_client

        return ClusterRouteSource(
            default_client(),
            namespace=settings.cluster_namespace,
            namespaces=settings.route_namespaces,
        )
    if settings.routes_file is not None:
        return FileRouteSource(settings.routes_file, poll_seconds=settings.routes_poll_seconds)
    return None


def rate_limit_policies(settings: GatewaySettings) -> Policies:
    return Policies(
        window=settings.rate_limit_window_seconds,
        per_user=settings.rate_limit_per_minute,
        per_tenant=settings.tenant_rate_limit_per_minute,
        per_ip=settings.ip_rate_limit_per_minute,
        unauthenticated=settings.unauthenticated_rate_limit,
        unauthenticated_window=settings.unauthenticated_window_seconds,
        stream_per_ip=settings.stream_connect_limit_per_minute,
        stream_per_user=settings.stream_user_connect_limit_per_minute,
    )


def _dispatch_path(path: str) -> str:
    """The normalised path (``//api/v2/x`` is ``/api/v2/x``), or the path itself when it
    cannot be normalised, for the proxy to refuse with 400."""
    try:
        return normalise_path(path)
    except PathError:
        return path if path.startswith("/api/") else "/api/"


class Gateway:
    """The ASGI application, with its parts as attributes for operators and tests."""

    def __init__(
        self,
        *,
        settings: GatewaySettings,
        verifier: TokenVerifier,
        signer: InternalIdentitySigner,
        route_source: RouteSource | None,
        token_leeway_seconds: float = 0.0,
    ) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.routes = TableHolder(RouteTable.build([]))
        self.route_source = route_source
        # No socket_timeout: redis-py would wrap every read in asyncio.wait_for (a task per
        # call); the proxy bounds its one Redis call per request with asyncio.timeout instead.
        self.redis = aioredis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=2.0, socket_keepalive=True
        )
        # The per-request gate script goes over one pipelined connection (None for TLS URLs,
        # which stay on redis-py); everything else uses redis-py.
        self.redis_mux = mux_for_url(settings.redis_url)
        self.breakers = BreakerBoard(
            failure_threshold=settings.breaker_failure_threshold,
            reset_seconds=settings.breaker_reset_seconds,
            on_change=self.metrics.breaker_changed,
        )
        # Created in the lifespan: an aiohttp session belongs to the loop that serves.
        self.http: aiohttp.ClientSession | None = None
        self.origins = OriginPolicy(
            origins=settings.cors_origins, patterns=settings.cors_origin_patterns
        )
        cache = (
            ResponseCache(self.redis, max_ttl=settings.cache_max_ttl_seconds)
            if settings.cache_enabled
            else None
        )
        # one log line per Redis outage, not per request; fail open/closed counted per request
        self.redis_health = RedisHealth(
            fail_open=settings.rate_limit_fail_open, metrics=self.metrics
        )
        self.invalidations = (
            Invalidations(
                cache,
                on_error=self.metrics.redis_errors.labels("cache").inc,
                health=self.redis_health,
            )
            if cache is not None
            else None
        )
        self.proxy = self._build_proxy(verifier, signer, cache)
        self.stream = EventStream(
            verifier=verifier,
            topics=settings.stream_topics,
            path=settings.stream_path,
            origins=self.origins,
            metrics=self.metrics,
            leeway_seconds=token_leeway_seconds,
            limiter=self.proxy.gate.limiter,
            trusted=self.proxy.trusted,
            connect_timeout=settings.stream_connect_timeout_seconds,
        )
        self.stream_ready = asyncio.Event()
        # a route of the gateway's own: it names the callback's limits and metrics
        self.oauth_route = Route(OAUTH_PREFIX.rstrip("/"), "http://gateway.local", "gateway")
        self.api = self._build_api()
        self.cors = self._build_cors()

    def _build_proxy(
        self, verifier: TokenVerifier, signer: InternalIdentitySigner, cache: ResponseCache | None
    ) -> Proxy:
        """The proxy pipeline, its per-request Redis gate (rate limits and cache) included."""
        return Proxy(
            settings=self.settings,
            routes=self.routes,
            verifier=verifier,
            signer=signer,
            gate=Gate(
                self.redis,
                limiter=RateLimiter(
                    self.redis,
                    policies=rate_limit_policies(self.settings),
                    fail_open=self.settings.rate_limit_fail_open,
                    health=self.redis_health,
                ),
                cache=cache,
                mux=self.redis_mux,
            ),
            cache=cache,
            invalidations=self.invalidations,
            breakers=self.breakers,
            client=None,  # type: ignore[arg-type]  # set in the lifespan
            metrics=self.metrics,
            access_log=self.settings.access_log,
            id_tokens=IdTokens() if self.settings.upstream_id_tokens else None,
        )

    def _build_cors(self) -> CORSMiddleware:
        # Starlette's CORS: the hand-written one measured no cheaper (docs/gateway.md, bench)
        return CORSMiddleware(
            self._dispatch,
            allow_origins=sorted(self.origins.origins),
            allow_origin_regex=self.origins.regex,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
            allow_headers=[
                "authorization",
                "content-type",
                "x-request-id",
                "cache-control",
                "if-match",
                "if-none-match",
                "idempotency-key",
            ],
            expose_headers=_EXPOSE,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            send = json_errors(send, error="cors_refused")  # a refused preflight is plain text
        await self.cors(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # websocket (the stream) and lifespan
            if scope["type"] == "websocket" and scope["path"].startswith(self.stream.path):
                await self.stream.app(scope, receive, send)
            else:
                await self.api(scope, receive, send)
            return
        path = _dispatch_path(scope["path"])
        if path.startswith(self.stream.path):
            scope = {**scope, "path": path}
            await self.stream.app(scope, receive, json_errors(send))
        elif path.startswith(OAUTH_PREFIX):
            # the callback is the gateway's own, behind the proxy's auth and rate limits
            scope = {**scope, "path": path}
            await self.proxy.serve_local(
                scope, receive, send, [], route=self.oauth_route, app=self.api
            )
        elif path.startswith("/api/"):
            # the proxy normalises the path itself (and answers 400 when it cannot be)
            await self.proxy(scope, receive, send)
        else:
            await self.api({**scope, "path": path}, receive, send)

    # -- lifespan and the FastAPI part ----------------------------------------------------

    async def _watch_routes(self) -> None:
        assert self.route_source is not None
        while True:
            try:
                async for table in self.route_source.watch():
                    self.routes.table = table
                    self.routes.loaded = True
                    self.metrics.routes.set(len(table))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("route source failed; keeping the current table")
                await asyncio.sleep(1.0)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.settings.max_connections, ttl_dns_cache=60, keepalive_timeout=30
            ),
            cookie_jar=aiohttp.DummyCookieJar(),  # never carry one user's cookies to another
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            trust_env=False,
        )
        self.proxy.client = self.http
        # Everything built so far (firebase-admin, google-auth, pydantic models...) lives as
        # long as the process: keep it out of the cyclic GC's old generation scans, which
        # otherwise show up as tail latency.
        gc.freeze()
        tasks = [asyncio.create_task(self.stream.run_listener(self.redis, self.stream_ready))]
        tasks.append(
            asyncio.create_task(self.stream.run_expiry(self.settings.stream_expiry_check_seconds))
        )
        if self.invalidations is not None:
            tasks.append(asyncio.create_task(self.invalidations.run()))
        if self.route_source is not None:
            tasks.append(asyncio.create_task(self._watch_routes()))
        else:
            log.warning("no route source configured; every /api path answers 404")
            self.routes.loaded = True
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.stream.aclose()
            await self.http.close()
            await self.redis.aclose()
            if self.redis_mux is not None:
                await self.redis_mux.aclose()

    def _build_api(self) -> FastAPI:
        api = FastAPI(
            title="Xynergy Intelligence Gateway",
            version="0.1.0",
            description=(
                "Every `/api/...` path is proxied to the upstream that the route table names "
                "(see docs/gateway.md); this document covers the gateway's own endpoints."
            ),
            lifespan=self._lifespan,
        )
        install_error_handlers(api)
        api.include_router(oauth_router(self.proxy.verifier))

        @api.get("/healthz", tags=["health"])
        async def healthz() -> dict[str, str]:
            """Liveness: the process answers."""
            return {"status": "ok"}

        @api.get("/readyz", tags=["health"])
        async def readyz() -> JSONResponse:
            """Readiness: a route table is loaded and, when rate limiting fails closed, Redis
            answers (failing open, the gateway serves without Redis, so an outage must not
            take every replica out of its Service); Redis and breaker states as detail."""
            try:
                redis_ok = bool(await asyncio.wait_for(self.redis.ping(), timeout=1.0))
            except Exception:
                redis_ok = False
            needs_redis = not self.settings.rate_limit_fail_open
            ready = self.routes.loaded and (redis_ok or not needs_redis)
            body: dict[str, Any] = {
                "status": "ready" if ready else "not_ready",
                "checks": {
                    "redis": "ok" if redis_ok else "unreachable",
                    "routes": {"loaded": self.routes.loaded, "count": len(self.routes.table)},
                },
                "breakers": self.breakers.states(),
            }
            return JSONResponse(body, status_code=200 if ready else 503)

        @api.get("/metrics", tags=["health"])
        async def metrics() -> Response:
            """Prometheus metrics."""
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        return api


def create_app(
    settings: GatewaySettings | None = None,
    *,
    auth_settings: AuthSettings | None = None,
    internal_settings: InternalIdentitySettings | None = None,
    verifier: TokenVerifier | None = None,
    route_source: RouteSource | None = None,
) -> Gateway:
    """Build the gateway from settings (read from the environment when not given)."""
    settings = settings or GatewaySettings()
    configure_logging(settings.log_level)
    auth_settings = auth_settings or AuthSettings()
    return Gateway(
        settings=settings,
        verifier=verifier or build_verifier(auth_settings),
        signer=InternalIdentitySigner(internal_settings or InternalIdentitySettings()),
        route_source=route_source if route_source is not None else default_route_source(settings),
        token_leeway_seconds=auth_settings.leeway_seconds,
    )
