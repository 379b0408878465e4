"""The Gmail service's application factory: ``create_app()`` wires settings, the token
reader, Redis, the history poller and the routers.

Served behind the gateway at ``/api/v2/gmail/...`` (and ``/api/v2/email/...``, an alias the
gateway rewrites) with the caller's signed identity. ``/healthz``, ``/readyz`` (Redis
answers) and ``/metrics`` are for the platform. Run with ``python -m services.gmail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import redis.asyncio as aioredis
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.common.connections import TokenSource
from services.common.errors import install_error_handlers
from services.common.health import health_routes
from services.common.identity import InternalIdentityVerifier
from services.common.oauth_tokens import OAuthTokens, OAuthTokenSettings, TokenReader
from services.common.openapi import BEHIND_GATEWAY, error_responses
from services.common.settings import InternalIdentitySettings
from services.common.telemetry import configure_logging
from services.gmail.gmailapi import GmailApi, discovery_document
from services.gmail.history import ConnectionLister, HistoryPoller, KubeConnections
from services.gmail.routers import labels, messages, threads
from services.gmail.settings import GmailSettings

__all__ = ["create_app"]

log = logging.getLogger("xynergy.gmail")
_ANSWERS = error_responses(*BEHIND_GATEWAY, 403, 404, 409, 422, 502, 504)
"""What the API operations can answer besides their success (Gmail behind them)."""


def _kube_parts() -> tuple[TokenSource | None, ConnectionLister | None]:
    try:
        from lightkube import AsyncClient

        client = AsyncClient()
    except Exception as exc:  # no kubeconfig and not in a cluster
        log.warning("no Kubernetes configuration", extra={"fields": {"error": type(exc).__name__}})
        return None, None
    namespace = OAuthTokenSettings().namespace
    return TokenReader(cast(Any, client)), KubeConnections(client, namespace=namespace)


def create_app(
    settings: GmailSettings | None = None,
    *,
    internal_settings: InternalIdentitySettings | None = None,
    tokens: TokenSource | None = None,
    connections: ConnectionLister | None = None,
) -> FastAPI:
    """Build the app; ``tokens`` and ``connections`` default to the cluster's
    OAuthConnections. History polling runs when both are there and the interval is > 0."""
    settings = settings or GmailSettings()
    configure_logging(settings.log_level)
    discovery_document()  # fail at start, not at the first call, if the document is missing
    if tokens is None or connections is None:
        default_tokens, default_connections = _kube_parts()
        tokens, connections = tokens or default_tokens, connections or default_connections
    redis = aioredis.Redis.from_url(settings.redis_url)

    def api(found: OAuthTokens) -> GmailApi:
        return GmailApi(
            found.access_token.get_secret_value(),
            api_url=settings.api_url,
            timeout=settings.request_timeout_seconds,
            connection=found.connection,
        )

    poller = None
    if tokens is not None and connections is not None:
        poller = HistoryPoller(
            redis,
            tokens,
            connections,
            api=api,
            topic=settings.events_topic,
            lock_seconds=settings.poll_lock_seconds,
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = None
        if poller is not None and settings.poll_interval_seconds > 0:
            task = asyncio.create_task(poller.run(settings.poll_interval_seconds))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await redis.aclose()

    app = FastAPI(title="Xynergy Gmail", version="0.1.0", lifespan=lifespan, redirect_slashes=False)
    state: Any = app.state
    state.settings = settings
    state.identity_verifier = InternalIdentityVerifier(
        internal_settings or InternalIdentitySettings()
    )
    state.tokens = tokens
    state.poller = poller
    install_error_handlers(app)
    for module in (messages, threads, labels):
        app.include_router(module.router, responses=_ANSWERS)
    health_routes(
        app, redis=redis, registry=CollectorRegistry(), timeout=settings.readiness_timeout_seconds
    )
    return app
