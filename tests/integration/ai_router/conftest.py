"""Real parts for the AI router's tests: redis-server (the gateway's session fixture), the
router served by uvicorn, and fake OpenAI-compatible providers (tests/fakes/openai) spoken to
through the real ``openai`` client.

``ai_router(fakes, **settings)`` serves a router whose chain is the given fakes in order (each
with its own name and key, a price table, a short timeout); ``call()`` signs the caller's
identity as the gateway would. Tests isolate themselves by tenant (fresh ids), so they share
one redis-server.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fakes.openai import FakeOpenAI
from gateway.conftest import (  # noqa: F401 - fixtures re-exported for this package
    INTERNAL_KEY,
    RedisServer,
    free_port,
    gateway_factory,
    redis_client,
    redis_server,
    serve,
    upstream,
    wait_for,
)
from pydantic import SecretStr

from services.ai.app import create_app
from services.ai.settings import AiSettings, PriceSpec, ProviderSpec
from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity

INTERNAL = InternalIdentitySettings(signing_key=SecretStr(INTERNAL_KEY))
SIGNER = InternalIdentitySigner(INTERNAL)
__all__ = ["INTERNAL_KEY", "SIGNER", "Identity", "free_port", "serve", "wait_for"]
MODEL = "gpt-test"
# USD per 1M tokens, per provider (for the test model)
PRICES = {"abacus": ("0.5", "1.5"), "openai": ("2.5", "10"), "internal": ("0", "0")}


def identity_headers(tenant: str, *roles: str) -> dict[str, str]:
    who = Identity(
        user_id=f"u-{tenant}", tenant_id=tenant, roles=roles or ("editor",), source="jwt"
    )
    return {IDENTITY_HEADER: SIGNER.sign(who)}


def new_tenant() -> str:
    return "t-" + uuid.uuid4().hex[:10]


def spec_for(fake: FakeOpenAI, *, timeout: float = 1.0) -> ProviderSpec:
    prompt, completion = PRICES.get(fake.state.name, ("1", "1"))
    return ProviderSpec(
        name=fake.state.name,
        base_url=fake.base_url,
        api_key=SecretStr(fake.state.api_key or "unused"),
        models={"*": ""},
        prices={MODEL: PriceSpec(prompt=prompt, completion=completion)},  # type: ignore[arg-type]
        timeout_seconds=timeout,
    )


def serve_router(fake: FakeOpenAI, redis_url: str) -> contextlib.AbstractAsyncContextManager[str]:
    """The AI router in front of one fake provider, served on a free port (its base URL)."""
    settings = AiSettings(providers=[spec_for(fake)], redis_url=redis_url, log_level="WARNING")
    return serve(create_app(settings, internal_settings=INTERNAL))


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeOpenAI]]:
    """abacus, openai and internal fakes, in the chain's order, each with its own key."""
    names = ("abacus", "openai", "internal")
    with contextlib.ExitStack() as stack:
        out = {
            n: stack.enter_context(FakeOpenAI(name=n, api_key=f"sk-{n}", hang_seconds=10))
            for n in names
        }
        yield out


@dataclass
class RunningRouter:
    url: str
    app: Any
    http: httpx.AsyncClient

    async def chat(
        self, tenant: str, *, headers: dict[str, str] | None = None, **body: Any
    ) -> httpx.Response:
        body.setdefault("model", MODEL)
        body.setdefault("messages", [{"role": "user", "content": "hello there"}])
        return await self.http.post(
            "/api/v1/ai/chat/completions",
            json=body,
            headers={**identity_headers(tenant), **(headers or {})},
        )

    async def get(self, path: str, tenant: str) -> Any:
        r = await self.http.get(f"/api/v1/ai{path}", headers=identity_headers(tenant))
        assert r.status_code == 200, r.text
        return r.json()

    async def post(self, path: str, tenant: str, body: Any, *roles: str) -> httpx.Response:
        return await self.http.post(
            f"/api/v1/ai{path}", json=body, headers=identity_headers(tenant, *roles)
        )


RouterFactory = Callable[..., contextlib.AbstractAsyncContextManager[RunningRouter]]


@pytest.fixture
def ai_router(redis_server: RedisServer) -> RouterFactory:  # noqa: F811
    @contextlib.asynccontextmanager
    async def start(
        chain: list[FakeOpenAI | ProviderSpec], *, provider_timeout: float = 1.0, **overrides: Any
    ) -> AsyncIterator[RunningRouter]:
        specs = [
            c if isinstance(c, ProviderSpec) else spec_for(c, timeout=provider_timeout)
            for c in chain
        ]
        settings = AiSettings(
            providers=specs, redis_url=redis_server.url, log_level="WARNING", **overrides
        )
        app = create_app(settings, internal_settings=INTERNAL)
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield RunningRouter(url=url, app=app, http=http)

    return start


def sse_data(text: str) -> list[Any]:
    """The data of each SSE event: parsed JSON, or the raw text ([DONE])."""
    out: list[Any] = []
    for event in text.split("\n\n"):
        if event.startswith("data: "):
            raw = event[6:]
            out.append(raw if raw == "[DONE]" else json.loads(raw))
    return out
