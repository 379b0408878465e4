"""The Marketing engine's application factory (``python -m services.marketing``)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.common.engine import create_engine_app
from services.common.settings import InternalIdentitySettings
from services.marketing.routers import campaigns
from services.marketing.settings import MarketingSettings

__all__ = ["create_app"]


def create_app(
    settings: MarketingSettings | None = None,
    *,
    internal_settings: InternalIdentitySettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the app from settings (read from the environment when not given)."""
    return create_engine_app(
        name="marketing",
        title="Xynergy Marketing engine",
        settings=settings or MarketingSettings(),
        routers=[campaigns.router],
        internal_settings=internal_settings,
        transport=transport,
    )
