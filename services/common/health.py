"""The health routes of a service that depends on Redis: ``/healthz``, ``/readyz``,
``/metrics``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["health_routes", "liveness_route"]


def liveness_route(app: FastAPI) -> None:
    """``/healthz``: the process answers."""

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}


def health_routes(app: FastAPI, *, redis: Any, registry: CollectorRegistry, timeout: float) -> None:
    """Liveness (the process answers), readiness (Redis answers within ``timeout``) and the
    service's Prometheus registry."""
    liveness_route(app)

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        try:
            async with asyncio.timeout(timeout):
                await redis.ping()
            checks = {"redis": "ok"}
        except Exception as exc:
            checks = {"redis": f"unreachable ({type(exc).__name__})"}
        ready = checks["redis"] == "ok"
        body = {"status": "ready" if ready else "not_ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
