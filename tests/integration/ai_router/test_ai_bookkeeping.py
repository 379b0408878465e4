"""The ledger, cache entry and statistics are written after the answer, not before it, and
none is lost: they land once Redis takes writes again, and closing the router waits for them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from fakes.openai import FakeOpenAI

from .conftest import PRICES, RouterFactory, new_tenant

pytestmark = pytest.mark.integration


@pytest.fixture
async def writes_paused(
    redis_client: aioredis.Redis,
) -> AsyncIterator[aioredis.Redis]:
    """Redis answers reads but holds every write (CLIENT PAUSE WRITE) until unpaused."""
    await redis_client.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    try:
        yield redis_client
    finally:
        await redis_client.execute_command("CLIENT", "UNPAUSE")


async def test_the_answer_does_not_wait_for_the_ledger_and_the_ledger_still_gets_it(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI], writes_paused: aioredis.Redis
) -> None:
    tenant = new_tenant()
    async with ai_router([fakes["openai"]]) as router:
        r = await router.chat(tenant, temperature=0)
        assert r.status_code == 200, r.text
        assert r.headers["x-ai-cache"] == "miss"
        # answered while Redis holds every write: the ledger is not written yet
        assert (await router.get("/usage", tenant))["total"]["requests"] == 0
        await writes_paused.execute_command("CLIENT", "UNPAUSE")
        await router.app.state.router.aclose()  # waits for the writes of answers given
        usage = await router.get("/usage", tenant)
        stats = await router.get("/cache/stats", tenant)
        again = await router.chat(tenant, temperature=0)
    served = fakes["openai"].usage
    prompt, completion = (Decimal(p) for p in PRICES["openai"])
    usd = (served["prompt_tokens"] * prompt + served["completion_tokens"] * completion) / 10**6
    assert usage["total"]["requests"] == 1
    assert usage["total"]["prompt_tokens"] == served["prompt_tokens"]
    assert Decimal(usage["total"]["cost_picousd"]) == usd * 10**12
    assert (stats["misses"], stats["entries"]) == (1, 1)
    assert again.headers["x-ai-cache"] == "hit"
    assert fakes["openai"].calls == 1


async def test_closing_the_router_waits_for_writes_still_held(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI], writes_paused: aioredis.Redis
) -> None:
    tenant = new_tenant()
    async with contextlib.AsyncExitStack() as stack:
        router = await stack.enter_async_context(ai_router([fakes["openai"]]))
        r = await router.chat(tenant, temperature=0.7)
        assert r.status_code == 200, r.text
        books = router.app.state.router.bookkeeping
        assert books.pending == 1  # held by Redis
        held = stack.pop_all()

        async def close() -> int:
            """Close the router; what is still pending the moment the close returns (read in
            the same task: a done callback may run after the test has already read it)."""
            await held.aclose()
            return books.pending

        closing = asyncio.create_task(close())
        # a close that does not wait would end here, with the write still held
        await asyncio.wait({closing}, timeout=3)
        await writes_paused.execute_command("CLIENT", "UNPAUSE")
        pending_at_close = await closing
    assert pending_at_close == 0
    rows = await writes_paused.hgetall(f"ai:u:{tenant}")
    assert int(rows[b"openai|gpt-test|requests"]) == 1
