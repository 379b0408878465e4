"""The Research coordinator's application factory (``python -m services.research``)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.common.engine import create_engine_app
from services.common.settings import InternalIdentitySettings
from services.research.routers import tasks
from services.research.settings import ResearchSettings

__all__ = ["create_app"]


def create_app(
    settings: ResearchSettings | None = None,
    *,
    internal_settings: InternalIdentitySettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the app from settings (read from the environment when not given)."""
    return create_engine_app(
        name="research",
        title="Xynergy Research coordinator",
        settings=settings or ResearchSettings(),
        routers=[tasks.router],
        internal_settings=internal_settings,
        transport=transport,
    )
