"""The Marketing engine against the AI router's wire format (router_stub): copy per channel
within its limits, the request the router gets, malformed answers (asked again once, then a
502 naming the field), the router's 503 and refusals, and 422s naming the field."""

from __future__ import annotations

import json
from typing import Any

import httpx

from services.marketing.app import create_app
from services.marketing.models import CHANNEL_LIMITS
from services.marketing.settings import MarketingSettings

from .router_stub import INTERNAL, RouterStub, answering, caller, engine_client, forwarded, identity

BRIEF = {
    "product": "Acme Notes, a note-taking app with offline sync",
    "audience": "students",
    "goal": "sign-ups before the new term",
    "key_points": ["works offline", "free for students"],
    "channels": ["email", "ads"],
}
EMAIL = {"subject": "Notes that work offline", "preheader": "Free for students", "body": "Hi!"}
ADS = {"headlines": ["Offline notes", "Free for students"], "descriptions": ["Sign up today."]}


def app(stub: RouterStub, **settings: Any) -> Any:
    return create_app(
        MarketingSettings(ai_url="http://ai.test", model="gpt-test", **settings),
        internal_settings=INTERNAL,
        transport=httpx.MockTransport(stub.handle),
    )


async def post(stub: RouterStub, body: Any, **settings: Any) -> Any:
    async with engine_client(app(stub, **settings)) as client:
        return await client.post("/api/v1/marketing/campaigns", json=body, headers=identity())


async def test_copy_per_requested_channel_and_what_the_router_is_asked() -> None:
    stub = answering(json.dumps({"email": EMAIL, "ads": ADS}))
    r = await post(stub, BRIEF)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["channels"] == {"email": EMAIL, "ads": ADS}
    assert out["limits"] == {"email": CHANNEL_LIMITS["email"], "ads": CHANNEL_LIMITS["ads"]}
    assert out["ai"] == {
        "model": "gpt-test",
        "provider": "openai",
        "cache": "miss",
        "calls": 1,
        "prompt_tokens": 11,
        "completion_tokens": 7,
    }
    [seen] = stub.seen
    assert seen.route == "marketing.campaign"
    assert forwarded(seen.headers) == caller()
    assert seen.body["model"] == "gpt-test"
    assert seen.body["temperature"] == 0
    assert seen.body["response_format"] == {"type": "json_object"}
    schema = json.loads(seen.system.split("JSON Schema:\n", 1)[1])
    assert sorted(schema["properties"]) == ["ads", "email"]  # only the requested channels
    assert sorted(schema["required"]) == ["ads", "email"]
    assert "Acme Notes" in seen.user
    assert "- works offline" in seen.user
    assert '"headline": 30' in seen.user  # the limits are in the prompt


async def test_copy_over_a_limit_is_asked_again_then_502_naming_the_field() -> None:
    long_subject = {**EMAIL, "subject": "x" * (CHANNEL_LIMITS["email"]["subject"] + 1)}
    stub = answering(json.dumps({"email": long_subject, "ads": ADS}))
    r = await post(stub, BRIEF)
    assert r.status_code == 502, r.text
    body = r.json()
    assert body["error"] == "malformed_model_answer"
    assert body["status"] == 502
    assert [f["field"] for f in body["fields"]] == ["email.subject"]
    assert "60 characters" in body["message"]
    assert len(stub.seen) == 2  # one repair attempt, carrying what was wrong
    repair = stub.seen[1].body["messages"]
    assert repair[-2]["role"] == "assistant"
    assert "email.subject" in repair[-1]["content"]


async def test_an_answer_nested_past_the_parsers_limit_is_a_502_not_a_500() -> None:
    """Found by fuzzing the services: JSON nested past the parser's recursion limit raised
    RecursionError, which only ValueError was caught for (a model can echo what a user wrote:
    its answer is untrusted input). Now a malformed answer like any other."""
    deep = '{"email": ' + "[" * 20_000 + "]" * 20_000 + "}"
    r = await post(answering(deep, deep), BRIEF)
    assert r.status_code == 502, r.text
    assert r.json()["error"] == "malformed_model_answer"
    assert [f["field"] for f in r.json()["fields"]] == ["answer"]


async def test_a_malformed_answer_repaired_on_the_second_ask() -> None:
    fenced = "Here you go:\n```json\n" + json.dumps({"email": EMAIL, "ads": ADS}) + "\n```"
    stub = answering("Sure! I'd love to help with that campaign.", fenced)
    r = await post(stub, BRIEF)
    assert r.status_code == 200, r.text
    assert r.json()["channels"]["email"] == EMAIL
    assert r.json()["ai"]["calls"] == 2


async def test_no_repair_when_turned_off_and_a_missing_channel_is_named() -> None:
    stub = answering(json.dumps({"email": EMAIL}))
    r = await post(stub, BRIEF, repair_attempts=0)
    assert r.status_code == 502
    assert r.json()["fields"] == [{"field": "ads", "message": "Field required"}]
    assert len(stub.seen) == 1


async def test_not_json_at_all_is_a_502_not_a_500() -> None:
    r = await post(answering("{not: json}"), BRIEF)
    assert r.status_code == 502
    assert r.json()["fields"][0]["field"] == "answer"
    assert "not valid JSON" in r.json()["message"]


async def test_router_unavailable_is_503_with_retry_after_and_refusal_502() -> None:
    r = await post(answering(503), BRIEF)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "2"
    assert r.json()["error"] == "unavailable"
    r = await post(answering(422), BRIEF)
    assert r.status_code == 502
    assert r.json()["error"] == "ai_refused"


async def test_422_names_each_bad_field_and_nothing_is_asked() -> None:
    stub = answering("unused")
    bad = {**BRIEF, "channels": ["email", "fax"], "variants": 9}
    del bad["product"]
    r = await post(stub, bad)
    assert r.status_code == 422
    fields = {f["field"] for f in r.json()["fields"]}
    assert fields == {"product", "channels.1", "variants"}
    r = await post(stub, {**BRIEF, "channels": ["ads", "ads"]})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "channels"
    assert stub.seen == []


async def test_the_caller_must_be_signed_by_the_gateway() -> None:
    stub = answering("unused")
    async with engine_client(app(stub)) as client:
        r = await client.post("/api/v1/marketing/campaigns", json=BRIEF)
        limits = await client.get("/api/v1/marketing/channels", headers=identity())
    assert r.status_code == 401
    assert limits.json()["channels"] == CHANNEL_LIMITS
    assert stub.seen == []
