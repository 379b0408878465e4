"""The AI router's provider for the internal model against the Internal AI service itself:
what the router accepts (OpenAI's chat body, message content as a text or as a list of
parts) the Internal AI serves, or refuses with a 422 the router relays as the caller's.

The router's own request model reads the body, as its chat endpoint does; the provider is the
chain's ``internal`` entry of :func:`services.ai.settings.default_providers`, pointed at the
Internal AI app served by uvicorn in this event loop, on a loopback socket listening before
the server starts (so nothing waits for it to come up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr

from services.ai.breaker import Cooldown
from services.ai.providers import CallerError, Provider
from services.ai.routers.chat import ChatRequest
from services.ai.settings import ProviderSpec, default_providers
from services.common.identity import InternalIdentitySigner
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity
from services.internal_ai.app import create_app
from services.internal_ai.settings import InternalAiSettings

KEY = InternalIdentitySettings(signing_key=SecretStr("k" * 40))
TEXT = "Revenue grew in March. The team shipped two features. Costs fell."


@contextlib.asynccontextmanager
async def internal_ai() -> AsyncIterator[str]:
    """The Internal AI app under uvicorn in this loop; its base URL (``.../v1``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections queue here until the server (after its lifespan) accepts
    app = create_app(InternalAiSettings(log_level="WARNING"), internal_settings=KEY)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)
        sock.close()


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[Provider]:
    """The chain's internal provider, as the router configures it, at the served app."""
    (internal,) = [s for s in default_providers() if s.name == "internal"]
    async with internal_ai() as url:
        spec = ProviderSpec.model_validate({**internal.model_dump(), "base_url": url})
        made = Provider(spec, spec.key() or "", Cooldown(failures=3, cooldown=30))
        yield made
        await made.aclose()


def routed(body: dict[str, Any]) -> dict[str, Any]:
    """The body as the router's chat endpoint passes it on."""
    return ChatRequest.model_validate(body).model_dump(exclude_unset=True)


def signed() -> str:
    return InternalIdentitySigner(KEY).sign(Identity("u", "acme"))


PARTS = [{"type": "text", "text": "Revenue grew in March. "},
         {"type": "text", "text": "The team shipped two features. Costs fell."}]  # fmt: skip


async def test_content_given_as_text_parts_is_answered_as_their_text(provider: Provider) -> None:
    """OpenAI's content parts (what the router accepts and passes on) are the text of their
    text parts, in order: the same answer as the text itself, not a 422."""
    as_parts = routed({"model": "gpt-test", "messages": [{"role": "user", "content": PARTS}]})
    assert as_parts["messages"][0]["content"] == PARTS  # the router passes the parts on
    as_text = routed({"model": "gpt-test", "messages": [{"role": "user", "content": TEXT}]})
    model = provider.spec.upstream_model("gpt-test")
    assert model == "all-minilm-l6-v2"
    answer = await provider.complete(as_parts, model, signed())
    plain = await provider.complete(as_text, model, signed())
    assert answer["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    assert answer["usage"] == plain["usage"]
    assert answer["system_fingerprint"] == "minilm-extractive-summary"
    streamed = [e async for e in provider.stream(as_parts, model, signed())]
    assert streamed[-1] == b"data: [DONE]\n\n"
    first = json.loads(streamed[0].removeprefix(b"data: "))
    assert first["choices"][0]["delta"]["content"] == plain["choices"][0]["message"]["content"]


async def test_a_part_that_is_not_text_is_the_callers_422_naming_it(provider: Provider) -> None:
    """An image is not something this model reads: the router relays a 422 (no fallback)
    that names the part and says why."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    body = routed({"model": "gpt-test", "messages": [
        {"role": "system", "content": "Summarise."},
        {"role": "user", "content": [PARTS[0], image]}]})  # fmt: skip
    with pytest.raises(CallerError) as refused:
        await provider.complete(body, "all-minilm-l6-v2", signed())
    assert refused.value.status == 422
    assert refused.value.body["fields"] == [
        {"field": "messages.1.content.1", "message": "only text is supported by this model "
         "(this part is of type 'image_url')"}]  # fmt: skip
    assert refused.value.body["message"].startswith("messages.1.content.1: only text")
