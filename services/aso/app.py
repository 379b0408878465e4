"""The ASO engine's application factory (``python -m services.aso``)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.aso.routers import suggestions
from services.aso.settings import AsoSettings
from services.common.engine import create_engine_app
from services.common.settings import InternalIdentitySettings

__all__ = ["create_app"]


def create_app(
    settings: AsoSettings | None = None,
    *,
    internal_settings: InternalIdentitySettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the app from settings (read from the environment when not given)."""
    return create_engine_app(
        name="aso",
        title="Xynergy ASO engine",
        settings=settings or AsoSettings(),
        routers=[suggestions.router],
        internal_settings=internal_settings,
        transport=transport,
    )
