"""Each engine endpoint through the real gateway, the real AI router (real redis-server) and a
fake OpenAI provider through the router's client: Marketing copy (and its second identical
brief answered from the router's cache), a malformed answer as a 502 naming the field, ASO
suggestions scored, a Research task with one failing sub-query summarised from the rest."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gateway.conftest import GatewayFactory, RedisServer

from .conftest import Stack, engine_stack

EMAIL = {"subject": "Notes that work offline", "preheader": "Free for students", "body": "Hi!"}
BRIEF = {"product": "Acme Notes", "audience": "students", "goal": "sign-ups", "channels": ["email"]}
LISTING = {
    "store": "apple",
    "title": "Acme Notes",
    "description": "Notes and flashcards.",
    "category": "Education",
}
ASO = {"keywords": [{"keyword": "flashcards", "relevance": 0.8}], "titles": ["Acme Flashcards"]}


def _sub_answer(user: str) -> str:
    question = user.split("\n", 1)[0]
    if "Regulation" in question:
        return "I am not sure."  # not JSON, twice: this sub-query fails
    return json.dumps({"answer": f"answer to {question}"})


def respond(body: dict[str, Any]) -> str:
    """What the model answers, by the engine prompt that asks."""
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    if system.startswith("You are a senior marketing copywriter"):
        return "Sorry, no." if "Broken" in user else json.dumps({"email": EMAIL})
    if system.startswith("You are an app store optimization"):
        return json.dumps(ASO)
    if system.startswith("You plan research"):
        return json.dumps({"sub_queries": ["Market size?", "Regulation?", "Competitors?"]})
    if system.startswith("You answer one sub-question"):
        return _sub_answer(user)
    return json.dumps({"summary": "A large market [q1] with rivals [q3]."})


@pytest.fixture(scope="module")
async def stack(redis_server: RedisServer, gateway_factory: GatewayFactory) -> AsyncIterator[Stack]:
    async with engine_stack(redis_server, gateway_factory, respond) as running:
        yield running


async def test_marketing_through_the_gateway_with_the_routers_cache(stack: Stack) -> None:
    auth = stack.auth()
    first = await stack.http.post("/api/v1/marketing/campaigns", json=BRIEF, headers=auth)
    calls = stack.fake.calls
    again = await stack.http.post("/api/v1/marketing/campaigns", json=BRIEF, headers=auth)
    assert first.status_code == 200, first.text
    assert first.json()["channels"] == {"email": EMAIL}
    assert first.json()["ai"]["provider"] == "openai"
    assert again.json()["ai"]["cache"] == "hit"
    assert stack.fake.calls == calls  # the second brief never reached the provider
    usage = await stack.http.get("/api/v1/ai/usage", headers=auth)
    assert usage.json()["providers"][0]["requests"] == 1  # billed to the caller's tenant
    anonymous = await stack.http.post("/api/v1/marketing/campaigns", json=BRIEF)
    assert anonymous.status_code == 401


async def test_a_malformed_answer_is_a_502_through_the_gateway(stack: Stack) -> None:
    before = stack.fake.calls
    r = await stack.http.post(
        "/api/v1/marketing/campaigns", json={**BRIEF, "product": "Broken"}, headers=stack.auth()
    )
    assert r.status_code == 502
    assert r.json()["error"] == "malformed_model_answer"
    assert r.json()["fields"] == [{"field": "answer", "message": "no JSON object in it"}]
    assert stack.fake.calls == before + 2  # asked, then asked again with what was wrong
    bad = await stack.http.post(
        "/api/v1/marketing/campaigns", json={**BRIEF, "channels": []}, headers=stack.auth()
    )
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "channels"


async def test_aso_through_the_gateway(stack: Stack) -> None:
    r = await stack.http.post("/api/v1/aso/suggestions", json=LISTING, headers=stack.auth())
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["keywords"] == [
        {"keyword": "flashcards", "relevance": 0.8, "in_listing": [], "score": 0.8}
    ]
    assert out["titles"][0]["keywords"] == ["flashcards"]
    assert out["keyword_field"] == "flashcards"


async def test_research_partial_failure_through_the_gateway(stack: Stack) -> None:
    r = await stack.http.post(
        "/api/v1/research/tasks", json={"question": "Enter the Nordics?"}, headers=stack.auth()
    )
    assert r.status_code == 200, r.text
    out = r.json()
    status = {s["id"]: s["status"] for s in out["sub_queries"]}
    assert status == {"q1": "answered", "q2": "failed", "q3": "answered"}
    assert out["partial"] is True
    assert [(c["id"], c["answer"]) for c in out["citations"]] == [
        ("q1", "answer to Sub-question: Market size?"),
        ("q3", "answer to Sub-question: Competitors?"),
    ]
    assert out["ai"]["calls"] == 6  # plan, 3 sub-queries (one asked twice), summary
