"""The AI router's application factory: ``create_app()`` wires settings, the provider chain,
Redis (cache, ledger, warm jobs) and the routers.

Served behind the gateway, which forwards ``/api/v1/ai/...`` unchanged with the caller's
signed identity. ``/healthz``, ``/readyz`` (Redis answers) and ``/metrics`` are for the
platform. Run with ``python -m services.ai``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.ai.breaker import Cooldown
from services.ai.cache import AnswerCache
from services.ai.engine import AiRouter
from services.ai.ledger import Ledger
from services.ai.providers import Provider
from services.ai.routers import cache, chat, usage
from services.ai.semantic import SemanticCache
from services.ai.settings import AiSettings
from services.ai.warm import WarmJobs
from services.common.errors import install_error_handlers
from services.common.health import health_routes
from services.common.identity import InternalIdentitySigner, InternalIdentityVerifier
from services.common.openapi import BEHIND_GATEWAY, error_responses
from services.common.settings import InternalIdentitySettings
from services.common.telemetry import configure_logging

__all__ = ["build_providers", "create_app"]

log = logging.getLogger("xynergy.ai")
_ANSWERS = error_responses(*BEHIND_GATEWAY, 403, 404, 422, 502, 504)
"""What the API operations can answer besides their success (the providers behind them)."""


def build_providers(settings: AiSettings) -> list[Provider]:
    """The configured chain, in order; a provider without its key is left out (logged)."""
    out = []
    for spec in settings.providers:
        key = spec.key()
        if key is None:
            log.warning(
                "provider left out: no API key",
                extra={"fields": {"provider": spec.name, "variable": spec.api_key_env}},
            )
            continue
        breaker = Cooldown(
            failures=settings.breaker_failures,
            cooldown=settings.breaker_cooldown_seconds,
            max_retry_after=settings.max_retry_after_seconds,
        )
        out.append(Provider(spec, key, breaker))
    return out


def create_app(
    settings: AiSettings | None = None,
    *,
    internal_settings: InternalIdentitySettings | None = None,
) -> FastAPI:
    """Build the app from settings (read from the environment when not given)."""
    settings = settings or AiSettings()
    internal_settings = internal_settings or InternalIdentitySettings()
    configure_logging(settings.log_level)
    redis = aioredis.Redis.from_url(settings.redis_url)
    providers = build_providers(settings)
    signer = InternalIdentitySigner(internal_settings)
    http = httpx.AsyncClient(timeout=10)
    semantic = None
    if settings.semantic_cache_enabled:
        semantic = SemanticCache(
            redis,
            http,
            embeddings_url=settings.semantic_embeddings_url,
            threshold=settings.semantic_threshold,
            max_entries=settings.semantic_max_entries,
            signer=signer,
        )
    router = AiRouter(
        providers,
        settings=settings,
        cache=AnswerCache(redis, max_entry_bytes=settings.cache_max_entry_bytes),
        ledger=Ledger(redis),
        signer=signer,
        semantic=semantic,
    )
    warm = WarmJobs(router, redis, concurrency=settings.warm_concurrency)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await warm.aclose()
            await router.aclose()  # the ledger and cache writes of answers already given
            for provider in providers:
                await provider.aclose()
            await http.aclose()
            await redis.aclose()

    app = FastAPI(
        title="Xynergy AI router", version="0.1.0", lifespan=lifespan, redirect_slashes=False
    )
    state: Any = app.state
    state.settings = settings
    state.identity_verifier = InternalIdentityVerifier(internal_settings)
    state.router = router
    state.warm = warm
    install_error_handlers(app)
    for module in (chat, cache, usage):
        app.include_router(module.router, responses=_ANSWERS)
    health_routes(
        app,
        redis=redis,
        registry=CollectorRegistry(),
        timeout=settings.readiness_timeout_seconds,
    )
    return app
