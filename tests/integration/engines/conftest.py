"""Real parts for the engines' tests: the gateway (routes file, JWT auth, signed identity),
the AI router with real redis-server, the Marketing, ASO and Research engines served by
uvicorn, and one fake OpenAI provider (tests/fakes/openai) spoken to through the router's
``openai`` client, whose answers a responder scripts (the fake's own answer echoes the prompt,
which is not the JSON an engine asks for). One stack per module: it takes a few seconds.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from ai_router.conftest import INTERNAL, MODEL, spec_for
from fakes.openai import FakeOpenAI, OpenAIState
from gateway.conftest import (  # noqa: F401 - fixtures re-exported for this package
    GatewayFactory,
    RedisServer,
    gateway_factory,
    make_jwt,
    redis_server,
    serve,
    upstream,
)

from services.ai.app import create_app as create_router
from services.ai.settings import AiSettings
from services.aso.app import create_app as create_aso
from services.aso.settings import AsoSettings
from services.marketing.app import create_app as create_marketing
from services.marketing.settings import MarketingSettings
from services.research.app import create_app as create_research
from services.research.settings import ResearchSettings

Responder = Callable[[dict[str, Any]], str]


@dataclass
class ScriptedState(OpenAIState):
    """The fake's state, answering with ``responder(body)`` (usage counted as the fake does)."""

    responder: Responder | None = None

    def answer(self, body: dict[str, Any]) -> tuple[str, dict[str, int]]:
        text, usage = super().answer(body)
        return (self.responder(body) if self.responder else text), usage


@dataclass
class Stack:
    http: httpx.AsyncClient
    fake: FakeOpenAI

    def auth(self) -> dict[str, str]:
        """A fresh tenant's bearer token (tests do not share the router's cache)."""
        tenant = "t-" + uuid.uuid4().hex[:10]
        return {"Authorization": f"Bearer {make_jwt(tenant_id=tenant)}"}


@contextlib.asynccontextmanager
async def engine_stack(
    redis: RedisServer, gateways: GatewayFactory, responder: Responder
) -> AsyncIterator[Stack]:
    fake = FakeOpenAI(name="openai", api_key="sk-openai")
    fake.state = ScriptedState(name="openai", api_key="sk-openai", responder=responder)
    settings = AiSettings(providers=[spec_for(fake)], redis_url=redis.url, log_level="WARNING")
    engines = {
        "marketing": (create_marketing, MarketingSettings),
        "aso": (create_aso, AsoSettings),
        "research": (create_research, ResearchSettings),
    }
    with fake:
        async with contextlib.AsyncExitStack() as stack:
            router = await stack.enter_async_context(
                serve(create_router(settings, internal_settings=INTERNAL))
            )
            services = [{"name": "ai", "url": router, "routes": [{"prefix": "/api/v1/ai"}]}]
            for name, (factory, engine_settings) in engines.items():
                app = factory(
                    engine_settings(ai_url=router, model=MODEL, log_level="WARNING"),
                    internal_settings=INTERNAL,
                )
                url = await stack.enter_async_context(serve(app))
                services.append(
                    {"name": name, "url": url, "routes": [{"prefix": f"/api/v1/{name}"}]}
                )
            gw = await stack.enter_async_context(gateways({"services": services}))
            yield Stack(http=gw.http, fake=fake)


__all__ = ["Stack", "engine_stack", "pytest"]
