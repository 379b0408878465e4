"""The orchestrator on a scripted AI router (httpx.MockTransport): parallel branches are in
flight together, every step's cost is recorded, a failing step is retried, and a run that
still fails is recorded once, whole, with the rest skipped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Set

import httpx
import pytest

from services.analytics.stores.duckdb import DuckDBStore
from services.analytics.workflows import Orchestrator, WorkflowError

PRICES = {"m-cheap": (1.0, 2.0), "m-fast": (10.0, 20.0)}
MODELS = {"cost": "m-cheap", "speed": "m-fast", "balanced": "m-cheap"}


class Router:
    """Answers chat completions; steps named in ``meet`` wait until all of them are in flight."""

    def __init__(self, meet: Set[str] = frozenset(), fail: dict[str, int] | None = None) -> None:
        self.meet = meet
        self.fail = dict(fail or {})
        self.in_flight: set[str] = set()
        self.together: set[str] = set()
        self.met = asyncio.Event()
        self.calls: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        step = request.headers["x-ai-route"].removeprefix("workflow.")
        body = json.loads(request.content)
        self.calls.append(step)
        if self.fail.get(step, 0) > 0:
            self.fail[step] -= 1
            return httpx.Response(503, json={"error": "unavailable"})
        self.in_flight.add(step)
        try:
            if step in self.meet:
                if self.meet <= self.in_flight:
                    self.together = set(self.in_flight)
                    self.met.set()
                await asyncio.wait_for(self.met.wait(), timeout=10)
        except TimeoutError:
            pass  # the test's assertion on `together` reports it
        finally:
            self.in_flight.discard(step)
        usage = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
        answer = {
            "model": body["model"],
            "usage": usage,
            "choices": [{"message": {"role": "assistant", "content": f"out of {step}"}}],
        }
        return httpx.Response(
            200, json=answer, headers={"x-ai-provider": "openai", "x-ai-cache": "miss"}
        )


@pytest.fixture
async def store() -> AsyncIterator[DuckDBStore]:
    s = DuckDBStore()
    await s.open()
    yield s
    await s.close()


def orchestrator(store: DuckDBStore, router: Router, retries: int = 1) -> Orchestrator:
    http = httpx.AsyncClient(transport=httpx.MockTransport(router))

    async def analytics(tenant: str, function: str) -> str:
        return f"{function} of {tenant}"

    return Orchestrator(
        store,
        http,
        ai_url="http://router",
        models=MODELS,
        prices=PRICES,
        retries=retries,
        analytics=analytics,
    )


async def test_parallel_branches_run_together_and_each_step_cost_is_recorded(
    store: DuckDBStore,
) -> None:
    router = Router(meet={"copy", "keywords"})
    run = await orchestrator(store, router).execute(
        tenant="acme",
        identity="signed",
        name="content_generation",
        goal="speed",
        inputs={"topic": "tea"},
    )
    assert router.together == {"copy", "keywords"}
    assert run.status == "succeeded"
    # 1000 prompt + 500 completion tokens at m-fast's 10 / 20 USD per 1M = 0.02 per step
    assert [(s["name"], s["cost_usd"]) for s in run.steps] == [
        ("research", pytest.approx(0.02)),
        ("copy", pytest.approx(0.02)),
        ("keywords", pytest.approx(0.02)),
        ("assemble", pytest.approx(0.02)),
    ]
    assert router.calls.index("assemble") == 3
    [stored] = await store.runs("acme")
    assert stored.cost_usd == pytest.approx(0.08)
    assert await store.runs("other") == []


async def test_the_cost_goal_runs_one_step_at_a_time(store: DuckDBStore) -> None:
    router = Router()
    run = await orchestrator(store, router).execute(
        tenant="acme",
        identity="signed",
        name="content_generation",
        goal="cost",
        inputs={"topic": "tea"},
    )
    assert run.status == "succeeded"
    assert {s["model"] for s in run.steps} == {"m-cheap"}
    assert run.cost_usd == pytest.approx(4 * 0.002)


async def test_predicted_cost_comes_from_history(store: DuckDBStore) -> None:
    orch = orchestrator(store, Router())
    wf_inputs = {"topic": "tea"}
    first = await orch.execute(
        tenant="acme", identity="s", name="content_generation", goal="speed", inputs=wf_inputs
    )
    second = await orch.execute(
        tenant="acme", identity="s", name="content_generation", goal="speed", inputs=wf_inputs
    )
    assert first.predicted_cost_usd != pytest.approx(first.cost_usd)
    assert second.predicted_cost_usd == pytest.approx(first.cost_usd)


async def test_a_failed_step_is_retried(store: DuckDBStore) -> None:
    router = Router(fail={"research": 1})
    run = await orchestrator(store, router, retries=1).execute(
        tenant="acme",
        identity="s",
        name="content_generation",
        goal="balanced",
        inputs={"topic": "tea"},
    )
    assert run.status == "succeeded"
    assert run.steps[0]["attempts"] == 2


async def test_a_run_that_fails_is_recorded_once_and_whole(store: DuckDBStore) -> None:
    router = Router(fail={"copy": 5})
    run = await orchestrator(store, router, retries=1).execute(
        tenant="acme", identity="s", name="content_generation", goal="cost", inputs={"topic": "tea"}
    )
    assert run.status == "failed"
    assert "copy" in run.error
    status = {s["name"]: s["status"] for s in run.steps}
    assert status["research"] == "succeeded"
    assert status["copy"] == "failed"
    assert status["assemble"] == "skipped"
    assert [r.run_id for r in await store.runs("acme")] == [run.run_id]


async def test_analytics_processing_mixes_analytics_and_ai_steps(store: DuckDBStore) -> None:
    run = await orchestrator(store, Router()).execute(
        tenant="acme", identity="s", name="analytics_processing", goal="balanced", inputs={}
    )
    assert run.status == "succeeded"
    assert [s["cost_usd"] for s in run.steps[:2]] == [0.0, 0.0]


@pytest.mark.parametrize(
    ("name", "goal", "inputs", "field"),
    [
        ("nope", "cost", {}, "workflow_name"),
        ("content_generation", "cheap", {"topic": "t"}, "goal"),
        ("content_generation", "cost", {}, "inputs.topic"),
    ],
)
async def test_bad_requests_name_the_field(
    store: DuckDBStore, name: str, goal: str, inputs: dict[str, str], field: str
) -> None:
    with pytest.raises(WorkflowError, match=f"^{field}:"):
        await orchestrator(store, Router()).execute(
            tenant="acme", identity="s", name=name, goal=goal, inputs=inputs
        )
