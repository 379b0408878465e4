"""The Slack service's application factory: ``create_app()`` wires settings, the token reader,
Redis, the webhook guard and the routers.

Served behind the gateway (``/api/v2/slack/...`` with the caller's signed identity), except
the Events API webhook, which Slack calls with its own signature. ``/healthz``, ``/readyz``
(Redis answers) and ``/metrics`` are for the platform. Run with ``python -m services.slack``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import redis.asyncio as aioredis
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from services.common.connections import TokenSource
from services.common.errors import install_error_handlers
from services.common.health import health_routes
from services.common.identity import InternalIdentityVerifier
from services.common.oauth_tokens import OAuthTokenSettings, TokenReader
from services.common.openapi import BEHIND_GATEWAY, error_responses
from services.common.settings import InternalIdentitySettings
from services.common.telemetry import configure_logging
from services.slack.events import MessageRelay
from services.slack.routers import channels, events, search, users
from services.slack.settings import SlackSettings
from services.slack.signatures import WebhookGuard
from services.slack.teams import KubeTeamDirectory, TeamDirectory

__all__ = ["create_app"]

log = logging.getLogger("xynergy.slack")
_ANSWERS = error_responses(*BEHIND_GATEWAY, 403, 404, 409, 422, 502, 504)
"""What the API operations can answer besides their success (Slack behind them)."""


def _kube_parts(settings: SlackSettings) -> tuple[TokenSource | None, TeamDirectory | None]:
    """The token reader and team directory on the default Kubernetes configuration, or
    (None, None) when there is none (API routes answer 503 saying so)."""
    try:
        from lightkube import AsyncClient

        client = AsyncClient()
    except Exception as exc:  # no kubeconfig and not in a cluster
        log.warning("no Kubernetes configuration", extra={"fields": {"error": type(exc).__name__}})
        return None, None
    namespace = OAuthTokenSettings().namespace
    # (TokenReader's KubeClient protocol is narrower than lightkube's overloads)
    return TokenReader(cast(Any, client)), KubeTeamDirectory(
        client, namespace=namespace, cache_seconds=settings.teams_cache_seconds
    )


class _Session:
    """One aiohttp session for every Slack call, made in the running loop on first use."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def create_app(
    settings: SlackSettings | None = None,
    *,
    internal_settings: InternalIdentitySettings | None = None,
    tokens: TokenSource | None = None,
    teams: TeamDirectory | None = None,
) -> FastAPI:
    """Build the app; ``tokens`` and ``teams`` default to the cluster's OAuthConnections."""
    settings = settings or SlackSettings()
    configure_logging(settings.log_level)
    if tokens is None or teams is None:
        default_tokens, default_teams = _kube_parts(settings)
        tokens, teams = tokens or default_tokens, teams or default_teams
    redis = aioredis.Redis.from_url(settings.redis_url)
    session = _Session()
    registry = CollectorRegistry()
    relayed = Counter(
        "xynergy_slack_events_total",
        "Events API callbacks by outcome (published, duplicate, ignored, no_tenant).",
        ["result"],
        registry=registry,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await session.aclose()
            await redis.aclose()

    app = FastAPI(title="Xynergy Slack", version="0.1.0", lifespan=lifespan, redirect_slashes=False)
    state: Any = app.state
    state.settings = settings
    state.identity_verifier = InternalIdentityVerifier(
        internal_settings or InternalIdentitySettings()
    )
    state.tokens = tokens
    state.http_session = session
    state.webhook_guard = WebhookGuard(
        signing_secret=settings.signing_secret,
        redis=redis,
        tolerance_seconds=settings.timestamp_tolerance_seconds,
    )
    state.relay = MessageRelay(
        redis,
        teams or _NoTeams(),
        topic=settings.events_topic,
        dedup_seconds=settings.event_dedup_seconds,
        counter=relayed,
    )
    install_error_handlers(app)
    for module in (channels, users, search):
        app.include_router(module.router, responses=_ANSWERS)
    # public at the gateway (Slack signs it): its 401 is a bad signature
    app.include_router(events.router, responses=error_responses(400, 401, 413, 429, 503))
    health_routes(app, redis=redis, registry=registry, timeout=settings.readiness_timeout_seconds)
    return app


class _NoTeams:
    async def tenants(self, team_id: str) -> list[str]:
        raise OSError("no access to OAuthConnections (no Kubernetes configuration)")
