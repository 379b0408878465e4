"""Cache-first: hits without a provider call, tenants apart, invalidation, warming, and
statistics and the cost ledger that add up against what the fake providers counted."""

from __future__ import annotations

from decimal import Decimal

from fakes.openai import FakeOpenAI

from .conftest import PRICES, RouterFactory, identity_headers, new_tenant, sse_data, wait_for


def msg(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def test_a_second_identical_deterministic_request_is_a_hit_without_a_provider_call(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    tenant = new_tenant()
    async with ai_router(list(fakes.values())) as router:
        first = await router.chat(tenant, temperature=0, messages=msg("what is 2+2?"))
        # the same request, normalised: whitespace around the text, 0 vs 0.0, a `user` field
        again = await router.chat(
            tenant, temperature=0.0, messages=msg("  what is 2+2? "), user="x"
        )
        warm = await router.chat(tenant, temperature=0.7, messages=msg("what is 2+2?"))
        warm2 = await router.chat(tenant, temperature=0.7, messages=msg("what is 2+2?"))
        forced = [
            await router.chat(
                tenant, temperature=0.7, messages=msg("poem"), headers={"X-AI-Cache": "force"}
            )
            for _ in range(2)
        ]
        off = await router.chat(
            tenant, temperature=0, messages=msg("what is 2+2?"), headers={"X-AI-Cache": "off"}
        )
    assert first.headers["x-ai-cache"] == "miss"
    assert again.headers["x-ai-cache"] == "hit"
    assert again.json() == first.json()
    assert again.headers["x-ai-provider"] == "abacus"
    assert (warm.headers["x-ai-cache"], warm2.headers["x-ai-cache"]) == ("bypass", "bypass")
    assert [f.headers["x-ai-cache"] for f in forced] == ["miss", "hit"]
    assert off.headers["x-ai-cache"] == "bypass"
    assert fakes["abacus"].calls == 1 + 2 + 1 + 1


async def test_streams_are_cached_as_their_events(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    tenant = new_tenant()
    async with ai_router(list(fakes.values())) as router:
        first = await router.chat(tenant, temperature=0, stream=True)
        again = await router.chat(tenant, temperature=0, stream=True)
    assert again.headers["x-ai-cache"] == "hit"
    assert [e if e == "[DONE]" else e["choices"] for e in sse_data(again.text)] == [
        e if e == "[DONE]" else e["choices"] for e in sse_data(first.text)
    ]
    assert fakes["abacus"].calls == 1


async def test_tenants_never_share_an_answer(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    a, b = new_tenant(), new_tenant()
    async with ai_router(list(fakes.values())) as router:
        await router.chat(a, temperature=0, messages=msg("secret plan"))
        other = await router.chat(b, temperature=0, messages=msg("secret plan"))
        again_b = await router.chat(b, temperature=0, messages=msg("secret plan"))
        stats_a = await router.get("/cache/stats", a)
        stats_b = await router.get("/cache/stats", b)
    assert other.headers["x-ai-cache"] == "miss"
    assert again_b.headers["x-ai-cache"] == "hit"
    assert fakes["abacus"].calls == 2
    assert (stats_a["misses"], stats_a["hits"], stats_a["entries"]) == (1, 0, 1)
    assert (stats_b["misses"], stats_b["hits"], stats_b["entries"]) == (1, 1, 1)


async def test_invalidate_by_prefix_by_model_and_all(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    tenant, other = new_tenant(), new_tenant()
    async with ai_router(list(fakes.values())) as router:
        for text in ("report: q1", "report: q2", "hello"):
            await router.chat(tenant, temperature=0, messages=msg(text))
        await router.chat(tenant, temperature=0, messages=msg("hello"), model="other-model")
        await router.chat(other, temperature=0, messages=msg("report: q1"))
        viewer = await router.post("/cache/invalidate", tenant, {}, "viewer")
        by_prefix = await router.post("/cache/invalidate", tenant, {"prefix": "report:"})
        after_prefix = await router.chat(tenant, temperature=0, messages=msg("report: q1"))
        kept = await router.chat(tenant, temperature=0, messages=msg("hello"))
        by_model = await router.post("/cache/invalidate", tenant, {"model": "other-model"})
        everything = await router.post("/cache/invalidate", tenant, {})
        bad = await router.post("/cache/invalidate", tenant, {"modle": "x"})
        other_kept = await router.chat(other, temperature=0, messages=msg("report: q1"))
    assert viewer.status_code == 403
    assert by_prefix.json() == {"deleted": 2}
    assert after_prefix.headers["x-ai-cache"] == "miss"
    assert kept.headers["x-ai-cache"] == "hit"
    assert by_model.json() == {"deleted": 1}
    assert everything.json() == {"deleted": 2}  # hello and report: q1 (cached again)
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "modle"
    assert other_kept.headers["x-ai-cache"] == "hit"


async def test_warm_fills_the_cache_in_the_background_and_reports_progress(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    tenant = new_tenant()
    prompts = [f"faq {i}" for i in range(12)]
    async with ai_router(list(fakes.values())) as router:
        await router.chat(tenant, temperature=0, messages=msg("faq 0"))
        started = await router.post(
            "/cache/warm", tenant, {"model": "gpt-test", "prompts": prompts}
        )
        assert started.status_code == 202, started.text
        job = started.json()["id"]

        async def finished() -> bool:
            return (await router.get(f"/cache/warm/{job}", tenant))["status"] == "done"

        await wait_for(finished, within=30, what="the warm job")
        progress = await router.get(f"/cache/warm/{job}", tenant)
        hits = [await router.chat(tenant, temperature=0, messages=msg(p)) for p in prompts]
        foreign = await router.http.get(
            f"/api/v1/ai/cache/warm/{job}", headers=identity_headers(new_tenant())
        )
    assert progress == {
        "id": job,
        "status": "done",
        "model": "gpt-test",
        "total": 12,
        "done": 12,
        "warmed": 11,
        "cached": 1,
        "failed": 0,
    }
    assert all(h.headers["x-ai-cache"] == "hit" for h in hits)
    assert fakes["abacus"].calls == 12
    assert foreign.status_code == 404  # another tenant's job


async def test_stats_and_ledger_add_up_against_the_fakes(
    ai_router: RouterFactory, fakes: dict[str, FakeOpenAI]
) -> None:
    tenant = new_tenant()
    mix = [f"question {i % 5}" for i in range(20)]  # 5 distinct, each asked 4 times
    async with ai_router(list(fakes.values()), breaker_failures=100) as router:
        for i, text in enumerate(mix):
            if i == 7:
                fakes["abacus"].fail("503")  # one miss answered by openai instead
            r = await router.chat(tenant, temperature=0, messages=msg(text))
            assert r.status_code == 200
        answered = sum(sum(fakes[n].usage.values()) for n in ("abacus", "openai"))
        await router.chat(tenant, temperature=0.9, messages=msg("creative"))  # bypass, billed
        stats = await router.get("/cache/stats", tenant)
        usage = await router.get("/usage", tenant)
    served = fakes["abacus"].served + fakes["openai"].served
    assert stats["misses"] == served - 1 == 5  # every miss is one answered provider call
    assert stats["hits"] == len(mix) - stats["misses"]
    assert stats["bypassed"] == 1
    assert abs(stats["hit_ratio"] - 15 / 20) < 1e-9

    def cost(name: str) -> Decimal:
        p, c = (Decimal(x) for x in PRICES[name])
        u = fakes[name].usage
        return (u["prompt_tokens"] * p + u["completion_tokens"] * c) / 1_000_000

    rows = {row["provider"]: row for row in usage["providers"]}
    for name in ("abacus", "openai"):
        assert rows[name]["requests"] == fakes[name].served
        assert rows[name]["prompt_tokens"] == fakes[name].usage["prompt_tokens"]
        assert rows[name]["completion_tokens"] == fakes[name].usage["completion_tokens"]
        assert Decimal(rows[name]["cost_picousd"]) / 10**12 == cost(name)
    assert usage["total"]["cost_picousd"] == sum(rows[n]["cost_picousd"] for n in rows)
    # each distinct question was answered once and hit 3 times: hits saved 3x its tokens
    assert stats["saved_tokens"] == 3 * answered
