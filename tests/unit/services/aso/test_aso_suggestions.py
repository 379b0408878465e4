"""The ASO endpoint against the AI router's wire format: the model's keywords and titles come
back scored by the engine's own arithmetic; a relevance out of range is a 502 naming it."""

from __future__ import annotations

import json
from typing import Any

import httpx
from marketing.router_stub import INTERNAL, RouterStub, answering, engine_client, identity

from services.aso.app import create_app
from services.aso.settings import AsoSettings

LISTING = {
    "store": "apple",
    "title": "Acme Notes",
    "subtitle": "Study planner",
    "description": "Notes and flashcards that sync offline.",
    "keywords": ["homework"],
    "category": "Education",
}
ANSWER = {
    "keywords": [
        {"keyword": "notes", "relevance": 0.9},
        {"keyword": "flashcards", "relevance": 0.8},
        {"keyword": "study planner", "relevance": 0.5},
    ],
    "titles": ["Acme Notes: Flashcards", "Acme Notes - Flashcards & Study Planner"],
}


async def post(stub: RouterStub, body: Any) -> httpx.Response:
    app = create_app(
        AsoSettings(ai_url="http://ai.test"),
        internal_settings=INTERNAL,
        transport=httpx.MockTransport(stub.handle),
    )
    async with engine_client(app) as client:
        return await client.post("/api/v1/aso/suggestions", json=body, headers=identity())


async def test_suggestions_are_scored_by_the_engine() -> None:
    stub = answering(json.dumps(ANSWER))
    r = await post(stub, LISTING)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [(k["keyword"], k["score"]) for k in out["keywords"]] == [
        ("flashcards", 0.8),
        ("study planner", 0.2),
        ("notes", 0.0),
    ]
    assert out["keywords"][2]["in_listing"] == ["title"]
    best, over = out["titles"]
    assert best["title"] == "Acme Notes: Flashcards"
    assert best["within_limit"]
    assert over["within_limit"] is False
    assert over["score"] == 0.0
    assert out["keyword_field"] == "flashcards"  # not already in the title or subtitle
    assert out["audit"]["over_limit"] == []
    assert stub.seen[0].route == "aso.suggestions"
    assert "at most 30 characters" in stub.seen[0].system


async def test_google_listing_has_no_keyword_field() -> None:
    r = await post(answering(json.dumps(ANSWER)), {**LISTING, "store": "google", "keywords": []})
    assert r.status_code == 200, r.text
    assert r.json()["keyword_field"] is None
    assert r.json()["audit"]["limits"]["subtitle"] == 80


async def test_relevance_out_of_range_is_a_502_naming_it() -> None:
    bad = {**ANSWER, "keywords": [{"keyword": "notes", "relevance": 1.5}]}
    r = await post(answering(json.dumps(bad)), LISTING)
    assert r.status_code == 502
    assert r.json()["fields"][0]["field"] == "keywords.0.relevance"


async def test_422_names_the_field() -> None:
    stub = answering("unused")
    r = await post(stub, {**LISTING, "store": "windows", "max_titles": 0})
    assert r.status_code == 422
    assert {f["field"] for f in r.json()["fields"]} == {"store", "max_titles"}
    assert stub.seen == []
