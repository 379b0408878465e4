"""The fake provider speaks what the official ``openai`` client reads: completions with usage,
streamed chunks with the usage chunk, and errors as the client's own exception types. (The
router calls providers over aiohttp; this keeps the fake honest against the real client.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
from fakes.openai import FakeOpenAI

pytestmark = pytest.mark.integration


@pytest.fixture
async def client() -> AsyncIterator[tuple[FakeOpenAI, openai.AsyncOpenAI]]:
    with FakeOpenAI(name="openai", api_key="sk-sdk") as fake:
        async with openai.AsyncOpenAI(
            base_url=fake.base_url, api_key="sk-sdk", max_retries=0, timeout=5
        ) as sdk:
            yield fake, sdk


async def test_a_completion_parses_with_its_usage(
    client: tuple[FakeOpenAI, openai.AsyncOpenAI],
) -> None:
    fake, sdk = client
    answer = await sdk.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hello there"}], temperature=0
    )
    assert answer.choices[0].message.content == "openai says: hello there"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == fake.usage["prompt_tokens"]
    assert answer.usage.completion_tokens == fake.usage["completion_tokens"]


async def test_a_stream_parses_chunk_by_chunk_with_the_usage_chunk_last(
    client: tuple[FakeOpenAI, openai.AsyncOpenAI],
) -> None:
    fake, sdk = client
    stream = await sdk.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "hello there"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "openai says: hello there"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == fake.usage["completion_tokens"]


async def test_errors_are_the_clients_exceptions(
    client: tuple[FakeOpenAI, openai.AsyncOpenAI],
) -> None:
    fake, sdk = client
    fake.fail("429", "503")
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.RateLimitError) as limited:
        await sdk.chat.completions.create(model="gpt-test", messages=messages)  # type: ignore[arg-type]
    assert float(limited.value.response.headers["retry-after"]) > 0
    with pytest.raises(openai.InternalServerError):
        await sdk.chat.completions.create(model="gpt-test", messages=messages)  # type: ignore[arg-type]
    bad = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model="gpt-test", messages=messages)  # type: ignore[arg-type]
    await bad.close()
