"""The provider chain: ordered fallback under each failure kind, the per-provider cooldown
opening and recovering, and streams relayed as the provider sent them."""

from __future__ import annotations

import pytest
from fakes.openai import FakeOpenAI

from .conftest import RouterFactory, free_port, new_tenant, spec_for, sse_data, wait_for

FAILURES = [
    ("429", "rate_limited"),
    ("500", "http_500"),
    ("502", "http_502"),
    ("503", "http_503"),
    ("hang", "timeout"),
]


@pytest.mark.parametrize(("fault", "outcome"), FAILURES)
async def test_a_failing_provider_falls_back_to_the_next_in_order(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI], fault: str, outcome: str
) -> None:
    fakes["abacus"].fail(fault)
    async with ai_router(list(fakes.values()), provider_timeout=0.5) as router:
        r = await router.chat(new_tenant(), temperature=0.7)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "openai says: hello there"
    assert r.headers["x-ai-provider"] == "openai"
    assert r.headers["x-ai-attempts"] == f"abacus={outcome},openai=ok"
    assert (fakes["abacus"].calls, fakes["openai"].calls, fakes["internal"].calls) == (1, 1, 0)


async def test_an_unreachable_provider_falls_back_and_two_failures_reach_the_last(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    gone = spec_for(fakes["abacus"]).model_copy(
        update={"base_url": f"http://127.0.0.1:{free_port()}/v1"}
    )
    fakes["openai"].fail("503")
    async with ai_router([gone, fakes["openai"], fakes["internal"]]) as router:
        r = await router.chat(new_tenant())
    assert r.status_code == 200, r.text
    assert r.headers["x-ai-attempts"] == "abacus=unreachable,openai=http_503,internal=ok"
    assert r.json()["choices"][0]["message"]["content"] == "internal says: hello there"


async def test_every_provider_failing_is_503_naming_each_attempt(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    for name, fault in (("abacus", "500"), ("openai", "429"), ("internal", "503")):
        fakes[name].fail(fault)
    async with ai_router(list(fakes.values())) as router:
        r = await router.chat(new_tenant())
    assert r.status_code == 503
    assert int(r.headers["retry-after"]) >= 1
    assert [a["outcome"] for a in r.json()["attempts"]] == ["http_500", "rate_limited", "http_503"]


async def test_bad_input_is_refused_naming_the_field_and_reaches_no_provider(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    async with ai_router(list(fakes.values())) as router:
        bad = await router.chat(new_tenant(), messages=[{"role": "narrator", "content": "x"}])
        cold = await router.chat(new_tenant(), temperature=3)
        mode = await router.chat(new_tenant(), headers={"X-AI-Cache": "sometimes"})
        passed = await router.chat(new_tenant(), seed=7, logit_bias={"50256": -100})
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "messages.0.role"
    assert cold.status_code == 422
    assert cold.json()["fields"][0]["field"] == "temperature"
    assert mode.status_code == 422
    assert mode.json()["fields"][0]["field"] == "X-AI-Cache"
    assert passed.status_code == 200
    assert fakes["abacus"].calls == 1  # only the valid request went out, with its extra fields
    assert fakes["abacus"].requests[-1]["seed"] == 7


async def test_breaker_opens_after_consecutive_failures_and_recovers_after_cooldown(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    fakes["abacus"].sticky("503")
    async with ai_router(
        list(fakes.values()), breaker_failures=2, breaker_cooldown_seconds=0.5
    ) as router:
        tenant = new_tenant()
        for _ in range(2):
            assert (await router.chat(tenant)).headers["x-ai-provider"] == "openai"
        assert fakes["abacus"].calls == 2
        r = await router.chat(tenant)
        assert r.headers["x-ai-attempts"] == "abacus=cooling,openai=ok"
        assert fakes["abacus"].calls == 2  # not asked while cooling down
        states = await router.get("/providers", tenant)
        assert states["providers"][0]["state"] == "cooling"

        fakes["abacus"].sticky(None)

        async def half_open() -> bool:
            return (await router.get("/providers", tenant))["providers"][0]["state"] == "half_open"

        await wait_for(half_open, within=10, what="abacus half-open")
        r = await router.chat(tenant)
        assert r.headers["x-ai-provider"] == "abacus"  # the trial call succeeded
        assert (await router.get("/providers", tenant))["providers"][0]["state"] == "available"


async def test_a_429_cools_the_provider_down_at_once_for_its_retry_after(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    fakes["abacus"].state.retry_after = "120"
    fakes["abacus"].fail("429")
    async with ai_router(list(fakes.values()), breaker_failures=5) as router:
        tenant = new_tenant()
        await router.chat(tenant)
        r = await router.chat(tenant)
        providers = (await router.get("/providers", tenant))["providers"]
    assert r.headers["x-ai-attempts"] == "abacus=cooling,openai=ok"
    assert providers[0]["state"] == "cooling"
    assert 100 < providers[0]["retry_in"] <= 120


async def test_streaming_passes_the_providers_events_through(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    async with ai_router(list(fakes.values())) as router:
        r = await router.chat(
            new_tenant(), stream=True, messages=[{"role": "user", "content": "one two three"}]
        )
        with_usage = await router.chat(
            new_tenant(), stream=True, stream_options={"include_usage": True}
        )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_data(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "abacus says: one two three"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert not any(
        c.get("usage") for c in chunks
    )  # not asked for: the router's usage chunk is kept back
    usage = sse_data(with_usage.text)[-2]
    assert usage["choices"] == []
    assert usage["usage"]["prompt_tokens"] == 5


async def test_a_stream_falls_back_before_its_first_event_and_is_cut_after(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    fakes["abacus"].fail("503")
    fakes["openai"].fail("cut")
    async with ai_router(list(fakes.values())) as router:
        r = await router.chat(new_tenant(), stream=True)
    events = sse_data(r.text)
    assert r.headers["x-ai-attempts"] == "abacus=http_503,openai=ok"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["error"]["code"] == "stream_cut"
    assert "[DONE]" not in events
    assert fakes["internal"].calls == 0
