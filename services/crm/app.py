"""The CRM's application factory: ``create_app()`` wires settings, Firestore, Redis, routers.

Served behind the gateway, which forwards ``/api/v2/crm/...`` unchanged with the caller's
signed identity; ``/healthz``, ``/readyz`` (Firestore answers) and ``/metrics`` are for the
platform, not the gateway. Run with ``python -m services.crm`` or
``uvicorn --factory services.crm.app:create_app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import firestore
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel

from services.common.identity import InternalIdentityVerifier
from services.common.settings import InternalIdentitySettings, SettingsError
from services.common.telemetry import REQUEST_ID_HEADER, configure_logging, valid_request_id
from services.crm.caching import CacheHeaders
from services.crm.errors import install_error_handlers
from services.crm.events import ChangePublisher
from services.crm.limits import BodyLimit, Deadline
from services.crm.routers import PREFIX, contacts, interactions, notes, statistics, tasks
from services.crm.settings import CrmSettings
from services.crm.store import CrmStore

__all__ = ["create_app"]

log = logging.getLogger("xynergy.crm")

_DESCRIPTION = """Tenant-isolated contacts, interactions, notes and tasks.

Reached through the gateway at `/api/v2/crm` (and `/api/xynergyos/v2/crm`) with a bearer
token; the gateway forwards the caller's identity. Roles: `viewer` reads, `editor` writes,
`admin` hard-deletes. Every POST that creates accepts `Idempotency-Key`; `PATCH` and `DELETE`
accept `If-Match` with the `ETag` of a GET (412 when stale). Ids of other tenants read as 404.

Every error, from the CRM or from the gateway in front of it, is an `ErrorBody`:
`{"error", "message", "status"}`, plus `fields` on 422 naming each bad field, parameter or
header. Each operation lists the statuses it can return.
"""


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


def _documented_errors_only(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document without FastAPI's default 422 (``{detail}``, a body the CRM never
    sends): operations document their own 422 with ``ErrorBody`` where they can return it."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for ops in spec["paths"].values():
            for op in ops.values():
                default = op["responses"].get("422", {})
                if "HTTPValidationError" in str(default.get("content")):
                    del op["responses"]["422"]
        for name in ("HTTPValidationError", "ValidationError"):
            spec.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = spec
    return app.openapi_schema


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "xynergy_crm_requests_total",
            "Requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "xynergy_crm_request_duration_seconds",
            "Request duration by route template.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.events = Counter(
            "xynergy_crm_events_total",
            "crm-changes events by result (published, failed).",
            ["result"],
            registry=self.registry,
        )


def _firestore(settings: CrmSettings) -> firestore.AsyncClient:
    """The Firestore client; SettingsError when there are no credentials to make it with."""
    try:
        return firestore.AsyncClient(project=settings.project_id, database=settings.database)
    except DefaultCredentialsError as exc:
        reason = " ".join(str(exc).split())
        raise SettingsError(
            f"Firestore: no usable Application Default Credentials ({reason}); set"
            " GOOGLE_APPLICATION_CREDENTIALS to a key file, run where the metadata server gives"
            " them, or set FIRESTORE_EMULATOR_HOST for the emulator"
        ) from None


def create_app(
    settings: CrmSettings | None = None,
    *,
    internal_settings: InternalIdentitySettings | None = None,
    firestore_client: firestore.AsyncClient | None = None,
) -> FastAPI:
    """Build the CRM app from settings (read from the environment when not given)."""
    settings = settings or CrmSettings()
    configure_logging(settings.log_level)
    metrics = _Metrics()
    db = firestore_client or _firestore(settings)
    redis = aioredis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    app = FastAPI(
        title="Xynergy CRM",
        version="0.1.0",
        description=_DESCRIPTION,
        lifespan=_lifespan(redis),
        # A trailing slash is a 404 in the one error shape, not a 307 to an internal URL.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.identity_verifier = InternalIdentityVerifier(
        internal_settings or InternalIdentitySettings()
    )
    app.state.store = CrmStore(
        db, idempotency_ttl=timedelta(seconds=settings.idempotency_ttl_seconds)
    )
    app.state.events = ChangePublisher(redis, topic=settings.events_topic, counter=metrics.events)
    app.state.metrics = metrics
    install_error_handlers(app)
    for module in (contacts, interactions, notes, tasks, statistics):
        app.include_router(module.router)
    app.openapi = lambda: _documented_errors_only(app)  # type: ignore[method-assign]
    _add_limits_and_caching(app, settings)
    app.middleware("http")(_observer(metrics, access_log=settings.access_log))
    app.include_router(_health_router(settings, metrics))
    return app


def _lifespan(
    redis: aioredis.Redis | None,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan: at shutdown the store closes (it waits for the background rollbacks
    still running, store.py), then the Redis client, even when the store's close fails."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            try:
                await app.state.store.aclose()  # rollbacks still running (store.py)
            finally:
                if redis is not None:
                    await redis.aclose()

    return lifespan


def _add_limits_and_caching(app: FastAPI, settings: CrmSettings) -> None:
    """The API's middleware under ``PREFIX``: body limit, Firestore deadline, cache headers."""
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, prefix=PREFIX)
    app.add_middleware(Deadline, seconds=settings.firestore_timeout_seconds, prefix=PREFIX)
    app.add_middleware(
        CacheHeaders,
        prefix=PREFIX,
        cacheable=f"{PREFIX}/contacts",
        max_age=settings.cache_max_age_seconds,
    )


Observer = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


def _observer(metrics: _Metrics, *, access_log: bool) -> Observer:
    """The HTTP middleware that counts and times every request by route template, logs it
    (``access_log``; not the health and metrics routes) and echoes a valid request id."""

    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        rid = request.headers.get(REQUEST_ID_HEADER)
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - start
            metrics.requests.labels(template, request.method, str(status)).inc()
            metrics.latency.labels(template).observe(elapsed)
            if access_log and template not in ("/healthz", "/readyz", "/metrics"):
                log.info(
                    "request",
                    extra={
                        "fields": {
                            "request_id": rid if valid_request_id(rid) else None,
                            "method": request.method,
                            "route": template,
                            "status": status,
                            "ms": round(elapsed * 1000, 2),
                        }
                    },
                )
        if valid_request_id(rid):
            response.headers[REQUEST_ID_HEADER] = rid  # type: ignore[assignment]
        return response

    return observe


def _health_router(settings: CrmSettings, metrics: _Metrics) -> APIRouter:
    """``/healthz``, ``/readyz`` (the store's Firestore answers) and ``/metrics``."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Firestore did not answer."}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: Firestore answers within the readiness timeout."""
        checks: dict[str, Any] = {}
        try:
            async with asyncio.timeout(settings.readiness_timeout_seconds):
                await request.app.state.store.ping()
            checks["firestore"] = "ok"
        except Exception as exc:
            checks["firestore"] = f"unreachable ({type(exc).__name__})"
        ready = checks["firestore"] == "ok"
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
