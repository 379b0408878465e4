"""The Research coordinator against the AI router's wire format: planning bounded by
max_sub_queries, a concurrency limit on the fan-out, a partial failure (one sub-answer
malformed, one timed out) summarised from what was answered with citations that refer to the
sub-answers, a summary citing what it may not (502), and every sub-query failing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from marketing.router_stub import INTERNAL, RouterStub, engine_client, identity

from services.research.app import create_app
from services.research.settings import ResearchSettings

TASK = {"question": "Should Acme enter the Nordic market?", "context": "B2B note-taking."}


def research_router(
    answers: dict[str, Any], *, plan: list[str] | None = None, summary: str = "x [q1]."
) -> RouterStub:
    """Answers each step by its route; sub-answers by the sub-question asked."""

    async def respond(route: str, body: dict[str, Any]) -> Any:
        if route == "research.plan":
            return json.dumps({"sub_queries": plan or []})
        if route == "research.summary":
            return json.dumps({"summary": summary})
        question = body["messages"][1]["content"].split("\n", 1)[0].removeprefix("Sub-question: ")
        for _ in range(3):  # let the other sub-queries run meanwhile
            await asyncio.sleep(0)
        found = answers[question]
        if found == "hang":
            await asyncio.Event().wait()
        return found if isinstance(found, int) else json.dumps(found)

    return RouterStub(respond)


async def post(stub: RouterStub, body: Any, **settings: Any) -> httpx.Response:
    app = create_app(
        ResearchSettings(ai_url="http://ai.test", **settings),
        internal_settings=INTERNAL,
        transport=httpx.MockTransport(stub.handle),
    )
    async with engine_client(app) as client:
        return await client.post("/api/v1/research/tasks", json=body, headers=identity())


async def test_planned_task_is_bounded_and_cites_the_sub_answers() -> None:
    plan = ["Market size?", "Competitors?", "Regulation?", "Pricing?", "Market size?"]
    answers = {q: {"answer": f"about {q.lower()}"} for q in plan}
    stub = research_router(answers, plan=plan, summary="Big market [q1]; rivals exist [q2][q1].")
    r = await post(stub, {**TASK, "max_sub_queries": 2})
    assert r.status_code == 200, r.text
    out = r.json()
    assert [s["question"] for s in out["sub_queries"]] == ["Market size?", "Competitors?"]
    assert out["dropped"] == 2  # the repeated question counted once
    assert out["citations"] == [
        {"id": "q1", "question": "Market size?", "answer": "about market size?"},
        {"id": "q2", "question": "Competitors?", "answer": "about competitors?"},
    ]
    assert out["partial"] is False
    assert out["planned"] is True
    assert out["ai"]["calls"] == 4
    assert stub.routes()[0] == "research.plan"
    assert stub.routes()[-1] == "research.summary"
    assert "At most 2 sub-questions" in stub.seen[0].system


async def test_partial_failure_is_summarised_from_what_was_answered() -> None:
    answers = {"A?": {"answer": "yes"}, "B?": {"wrong": "shape"}, "C?": "hang"}
    stub = research_router(answers, summary="Yes [q1]; B and C are unknown.")
    r = await post(stub, {**TASK, "sub_queries": list(answers)}, sub_query_timeout_seconds=0.5)
    assert r.status_code == 200, r.text
    out = r.json()
    subs = {s["id"]: s for s in out["sub_queries"]}
    assert subs["q1"]["status"] == "answered"
    assert subs["q2"]["status"] == "failed"
    assert "answer: Field required" in subs["q2"]["error"]
    assert subs["q3"]["status"] == "timed_out"
    assert subs["q3"]["answer"] is None
    assert out["partial"] is True
    assert out["planned"] is False
    assert [c["id"] for c in out["citations"]] == ["q1"]
    assert out["ai"]["calls"] == 4  # q1, q2 twice (billed though it failed), the summary
    summary_prompt = stub.seen[-1].user
    assert "[q1] A?\nyes" in summary_prompt
    assert "[q2]" not in summary_prompt
    assert "[q3]" not in summary_prompt
    assert "research.plan" not in stub.routes()


async def test_fan_out_respects_the_concurrency_limit() -> None:
    answers = {f"Q{i}?": {"answer": str(i)} for i in range(6)}
    stub = research_router(answers)
    r = await post(stub, {**TASK, "sub_queries": list(answers)}, concurrency=2)
    assert r.status_code == 200, r.text
    assert stub.max_in_flight == 2
    stub = research_router(answers)
    await post(stub, {**TASK, "sub_queries": list(answers)}, concurrency=6)
    assert stub.max_in_flight == 6  # the stub does let them overlap


async def test_a_summary_citing_a_failed_sub_answer_is_a_502() -> None:
    answers = {"A?": {"answer": "yes"}, "B?": 503}
    stub = research_router(answers, summary="Yes [q1], and [q2] too.")
    r = await post(stub, {**TASK, "sub_queries": list(answers)})
    assert r.status_code == 502
    body = r.json()
    assert body["fields"][0]["field"] == "summary"
    assert "q2: not an answered sub-query" in body["message"]


async def test_every_sub_query_failing_is_503_when_providers_were_out() -> None:
    stub = research_router({"A?": 503, "B?": {"bad": 1}})
    r = await post(stub, {**TASK, "sub_queries": ["A?", "B?"]})
    assert r.status_code == 503
    assert "q1:" in r.json()["message"]
    assert "q2:" in r.json()["message"]
    assert "research.summary" not in stub.routes()
    r = await post(research_router({"B?": {"bad": 1}}), {**TASK, "sub_queries": ["B?"]})
    assert r.status_code == 502
    assert r.json()["error"] == "research_failed"


async def test_422_names_the_field() -> None:
    r = await post(research_router({}), {**TASK, "sub_queries": [], "max_sub_queries": 9})
    assert r.status_code == 422
    assert {f["field"] for f in r.json()["fields"]} == {"sub_queries", "max_sub_queries"}
