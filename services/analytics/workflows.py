"""The workflow orchestrator: DAGs of steps run with dependency resolution and parallelism,
costs predicted per step from history, and each run recorded whole.

A step is an AI router call (``ai``: a prompt template filled from the inputs and the outputs
of the steps it depends on) or an analytics call (``analytics``: a function of this service,
e.g. the tenant's cost report). A step starts once every step it depends on has succeeded;
up to the goal's parallelism run at once. The goal chooses the model and the parallelism:
``cost`` (the cheap model, one step at a time), ``speed`` (the fast model, every ready step at
once), ``balanced`` (the default model, two at a time). A failed step is retried
(``step_retries``); if it still fails the steps in flight are cancelled, the rest are skipped
and the run is ``failed``. Either way the run is written once, as one row with every step's
status, attempts, tokens and cost, so no run is ever half-recorded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import string
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from services.analytics.records import RunRow, utc
from services.analytics.stores import AnalyticsStore
from services.common.identity import IDENTITY_HEADER

__all__ = ["GOALS", "STANDARD", "Orchestrator", "Step", "Workflow", "WorkflowError"]

Goal = Literal["cost", "speed", "balanced"]
GOALS: dict[str, int] = {"cost": 1, "speed": 0, "balanced": 2}
"""Goal -> steps in flight at most (0 = no limit)."""


@dataclass(frozen=True)
class Step:
    name: str
    kind: Literal["ai", "analytics"]
    prompt: str = ""
    depends_on: tuple[str, ...] = ()
    max_tokens: int = 400
    function: str = ""


@dataclass(frozen=True)
class Workflow:
    name: str
    description: str
    steps: tuple[Step, ...]
    inputs: tuple[str, ...] = ()

    def check(self) -> None:
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: step names must be unique")
        done: set[str] = set()
        todo = list(self.steps)
        while todo:
            ready = [s for s in todo if set(s.depends_on) <= done]
            if not ready:
                raise ValueError(
                    f"{self.name}: steps {[s.name for s in todo]} "
                    "depend on a cycle or an unknown step"
                )
            done |= {s.name for s in ready}
            todo = [s for s in todo if s not in ready]


STANDARD: dict[str, Workflow] = {
    w.name: w
    for w in (
        Workflow(
            "content_generation",
            "Research a topic, then write marketing copy and ASO keywords in parallel, then "
            "assemble them.",
            (
                Step("research", "ai", "List the five key facts a buyer should know about $topic."),
                Step(
                    "copy",
                    "ai",
                    "Write launch copy for $topic from these facts:\n$research",
                    ("research",),
                ),
                Step(
                    "keywords",
                    "ai",
                    "Suggest app store keywords for $topic from:\n$research",
                    ("research",),
                ),
                Step(
                    "assemble",
                    "ai",
                    "Combine into one brief.\nCopy:\n$copy\nKeywords:\n$keywords",
                    ("copy", "keywords"),
                ),
            ),
            inputs=("topic",),
        ),
        Workflow(
            "analytics_processing",
            "Gather costs and event volumes in parallel, then summarise them for the tenant.",
            (
                Step("costs", "analytics", function="costs"),
                Step("events", "analytics", function="events"),
                Step(
                    "summary",
                    "ai",
                    "Summarise for an operator, in three sentences:\n"
                    "Costs: $costs\nEvents: $events",
                    ("costs", "events"),
                ),
            ),
        ),
    )
}


class WorkflowError(Exception):
    """Bad request to run a workflow (unknown name, goal or missing input)."""


@dataclass
class _StepRun:
    name: str
    status: str = "pending"
    attempts: int = 0
    started: float | None = None
    finished: float | None = None
    model: str = ""
    provider: str = ""
    cache: str = ""
    tokens: int = 0
    cost_usd: float = 0.0
    predicted_cost_usd: float = 0.0
    error: str = ""
    output: str = field(default="", repr=False)

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "output"} | {
            "output_chars": len(self.output)
        }


Analytics = Callable[[str, str], Awaitable[str]]
"""(tenant, function) -> text for an ``analytics`` step."""


class Orchestrator:
    def __init__(
        self,
        store: AnalyticsStore,
        http: httpx.AsyncClient,
        *,
        ai_url: str,
        models: dict[str, str],
        prices: dict[str, tuple[float, float]],
        retries: int,
        analytics: Analytics,
    ) -> None:
        self.store = store
        self.http = http
        self.chat_url = ai_url.rstrip("/") + "/api/v1/ai/chat/completions"
        self.models = models
        self.prices = prices
        self.retries = retries
        self.analytics = analytics
        self.running: dict[str, dict[str, Any]] = {}

    def _price(self, model: str, prompt: int, completion: int) -> float:
        p, c = self.prices.get(model, self.prices.get("*", (0.0, 0.0)))
        return (prompt * p + completion * c) / 1e6

    async def predict(self, tenant: str, workflow: Workflow, goal: str) -> dict[str, float]:
        """Per step: the mean cost of its last successful runs, else an estimate from the
        prompt's length and ``max_tokens`` at the goal's model's price."""
        past = await self.store.runs(tenant, workflow=workflow.name, limit=20)
        seen: dict[str, list[float]] = {}
        for run in past:
            for s in run.steps:
                if s.get("status") == "succeeded":
                    seen.setdefault(s["name"], []).append(float(s.get("cost_usd", 0.0)))
        out = {}
        for step in workflow.steps:
            if step.name in seen:
                out[step.name] = sum(seen[step.name]) / len(seen[step.name])
            elif step.kind == "ai":
                out[step.name] = self._price(
                    self.models[goal], len(step.prompt) // 4 + 200, step.max_tokens
                )
            else:
                out[step.name] = 0.0
        return out

    async def execute(
        self, *, tenant: str, identity: str, name: str, goal: str, inputs: dict[str, str]
    ) -> RunRow:
        workflow = STANDARD.get(name)
        if workflow is None:
            raise WorkflowError(f"workflow_name: expected one of {sorted(STANDARD)}, got {name!r}")
        if goal not in GOALS:
            raise WorkflowError(f"goal: expected one of {sorted(GOALS)}, got {goal!r}")
        missing = [i for i in workflow.inputs if not inputs.get(i)]
        if missing:
            raise WorkflowError(f"inputs.{missing[0]}: required by {name}")
        predicted = await self.predict(tenant, workflow, goal)
        runs = {
            s.name: _StepRun(s.name, predicted_cost_usd=predicted[s.name]) for s in workflow.steps
        }
        run_id = uuid.uuid4().hex[:16]
        started = time.time()
        self.running[run_id] = {
            "tenant": tenant,
            "workflow": name,
            "goal": goal,
            "steps": runs,
            "started": started,
        }
        try:
            error = await self._run(
                workflow, runs, tenant=tenant, identity=identity, goal=goal, inputs=inputs
            )
        finally:
            self.running.pop(run_id, None)
        row = RunRow(
            tenant=tenant,
            run_id=run_id,
            workflow=name,
            goal=goal,
            status="failed" if error else "succeeded",
            started=utc(started),
            finished=utc(time.time()),
            cost_usd=sum(r.cost_usd for r in runs.values()),
            predicted_cost_usd=sum(predicted.values()),
            error=error,
            steps=[runs[s.name].record() for s in workflow.steps],
        )
        await self.store.record_run(row)
        return row

    async def _run(
        self,
        workflow: Workflow,
        runs: dict[str, _StepRun],
        *,
        tenant: str,
        identity: str,
        goal: str,
        inputs: dict[str, str],
    ) -> str:
        limit = GOALS[goal] or len(workflow.steps)
        pending = list(workflow.steps)
        flying: dict[asyncio.Task[None], Step] = {}
        done: set[str] = set()
        values = dict(inputs)
        while pending or flying:
            for step in [s for s in pending if set(s.depends_on) <= done][
                : max(0, limit - len(flying))
            ]:
                pending.remove(step)
                task = asyncio.create_task(
                    self._attempts(step, runs[step.name], tenant, identity, goal, values)
                )
                flying[task] = step
            finished, _ = await asyncio.wait(flying, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                step = flying.pop(task)
                if runs[step.name].status != "succeeded":
                    for other in flying:
                        other.cancel()
                    await asyncio.gather(*flying, return_exceptions=True)
                    for s in [*flying.values(), *pending]:
                        runs[s.name].status = "cancelled" if s in flying.values() else "skipped"
                    failed = runs[step.name]
                    tries = failed.attempts
                    return f"step {step.name} failed after {tries} attempt(s): {failed.error}"
                done.add(step.name)
                values[step.name] = runs[step.name].output
        return ""

    async def _attempts(
        self,
        step: Step,
        run: _StepRun,
        tenant: str,
        identity: str,
        goal: str,
        values: dict[str, str],
    ) -> None:
        run.started = time.time()
        run.status = "running"
        for _ in range(self.retries + 1):
            run.attempts += 1
            try:
                if step.kind == "ai":
                    await self._ai(step, run, identity, goal, values)
                else:
                    run.output = await self.analytics(tenant, step.function)
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {exc}"[:300]
                continue
            run.status, run.error = "succeeded", ""
            break
        else:
            run.status = "failed"
        run.finished = time.time()

    async def _ai(
        self, step: Step, run: _StepRun, identity: str, goal: str, values: dict[str, str]
    ) -> None:
        model = self.models[goal]
        prompt = string.Template(step.prompt).safe_substitute(values)
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": step.max_tokens,
            "temperature": 0,
        }
        headers = {IDENTITY_HEADER: identity, "X-AI-Route": f"workflow.{step.name}"}
        r = await self.http.post(self.chat_url, json=body, headers=headers, timeout=120)
        if r.status_code != 200:
            raise RuntimeError(f"AI router answered {r.status_code}: {r.text[:200]}")
        data = r.json()
        usage = data.get("usage") or {}
        prompt_tokens, completion = (
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
        )
        run.model = str(data.get("model", model))
        run.provider = r.headers.get("x-ai-provider", "")
        run.cache = r.headers.get("x-ai-cache", "")
        run.tokens = prompt_tokens + completion
        hit = run.cache in ("hit", "semantic_hit")
        run.cost_usd = 0.0 if hit else self._price(model, prompt_tokens, completion)
        run.output = str(data["choices"][0]["message"]["content"])


def run_view(run: RunRow) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "goal": run.goal,
        "status": run.status,
        "started": run.started.isoformat(),
        "finished": run.finished.isoformat(),
        "duration_seconds": (run.finished - run.started) / dt.timedelta(seconds=1),
        "cost_usd": run.cost_usd,
        "predicted_cost_usd": run.predicted_cost_usd,
        "error": run.error,
        "steps": run.steps,
    }
