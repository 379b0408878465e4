"""The router behind the real gateway (routes file, JWT auth, signed identity), with the real
Internal AI service as the last provider: an external provider answers while it can; with no
external key configured the internal model answers; streams cross the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakes.openai import FakeOpenAI
from gateway.conftest import GatewayFactory, make_jwt

from services.ai.settings import ProviderSpec
from services.internal_ai.app import create_app as create_internal_ai
from services.internal_ai.settings import InternalAiSettings

from .conftest import INTERNAL, RouterFactory, new_tenant, serve, spec_for, sse_data


@pytest.fixture(scope="module")
async def internal_ai() -> AsyncIterator[str]:
    app = create_internal_ai(InternalAiSettings(log_level="WARNING"), internal_settings=INTERNAL)
    async with serve(app) as url:
        yield url


async def test_ai_through_the_gateway_falls_back_to_the_internal_model(
    ai_router: RouterFactory,
    gateway_factory: GatewayFactory,
    internal_ai: str,
) -> None:
    openai = FakeOpenAI(name="openai", api_key="sk-openai").start()
    unkeyed = ProviderSpec(
        name="abacus", base_url="http://127.0.0.1:9/v1", api_key_env="XY_TEST_UNSET_KEY"
    )
    internal = ProviderSpec(
        name="internal",
        base_url=f"{internal_ai}/v1",
        models={"*": "all-minilm-l6-v2"},
        forward_identity=True,
    )

    try:
        async with ai_router([unkeyed, spec_for(openai), internal]) as router:
            routes = {
                "services": [
                    {"name": "ai", "url": router.url, "routes": [{"prefix": "/api/v1/ai"}]}
                ]
            }
            async with gateway_factory(routes) as gw:
                tenant = new_tenant()
                auth = {"Authorization": f"Bearer {make_jwt(tenant_id=tenant)}"}
                text = "Revenue grew in March. The team shipped two features. Costs fell."
                body = {
                    "model": "gpt-test",
                    "messages": [{"role": "user", "content": text}],
                    "temperature": 0,
                }
                first = await gw.http.post("/api/v1/ai/chat/completions", json=body, headers=auth)
                again = await gw.http.post("/api/v1/ai/chat/completions", json=body, headers=auth)
                openai.sticky("503")
                label = {
                    **body,
                    "messages": [
                        {
                            "role": "user",
                            "content": "Labels: sport, finance\nThe striker scored twice.",
                        }
                    ],
                }
                fallback = await gw.http.post(
                    "/api/v1/ai/chat/completions", json=label, headers=auth
                )
                stream = await gw.http.post(
                    "/api/v1/ai/chat/completions",
                    json={**body, "stream": True, "temperature": 0.5},
                    headers=auth,
                )
                usage = await gw.http.get("/api/v1/ai/usage", headers=auth)
                anonymous = await gw.http.post("/api/v1/ai/chat/completions", json=body)
    finally:
        openai.stop()
    assert first.status_code == 200, first.text
    assert first.headers["x-ai-provider"] == "openai"
    assert first.headers["x-ai-attempts"] == "openai=ok"  # abacus has no key: not in the chain
    assert again.headers["x-ai-cache"] == "hit"
    assert fallback.status_code == 200, fallback.text
    assert fallback.headers["x-ai-provider"] == "internal"
    assert fallback.json()["choices"][0]["message"]["content"] == "sport"
    assert fallback.json()["system_fingerprint"] == "minilm-classification"
    events = sse_data(stream.text)
    assert events[-1] == "[DONE]"
    assert stream.headers["x-ai-provider"] == "internal"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"])
    rows = {r["provider"]: r for r in usage.json()["providers"]}
    assert rows["openai"]["requests"] == 1
    assert rows["internal"]["requests"] == 2
    assert anonymous.status_code == 401
