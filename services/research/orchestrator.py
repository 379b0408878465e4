"""How a research task runs: plan (unless the sub-queries are given), answer the sub-queries
in parallel, summarise with citations.

The fan-out is bounded twice: at most ``max_sub_queries`` of the plan are asked (the rest
dropped, said in ``dropped``), and at most ``concurrency`` at once. Each sub-query has its own
timeout; one that fails (malformed twice, no provider, timed out) is reported with its error
and left out of the summary, which then says the result is partial. When none is answered
the task fails: 503 with Retry-After if a provider was unavailable, else 502.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from services.common.engine import AiMeta, Caller, Engine, prompt
from services.common.errors import ApiError
from services.research.models import (
    Plan,
    ResearchTask,
    SubAnswer,
    SubResult,
    cited,
    summary_model,
)
from services.research.settings import ResearchSettings

__all__ = ["Research", "citations", "run_task"]

_PACKAGE = "services.research"


@dataclass
class Research:
    questions: list[str]
    dropped: int = 0
    results: list[SubResult] = field(default_factory=list)
    summary: str = ""
    meta: AiMeta = field(default_factory=AiMeta)


async def _plan(engine: Engine, task: ResearchTask, caller: Caller, out: Research) -> None:
    if task.sub_queries is not None:
        out.questions = list(dict.fromkeys(task.sub_queries))
        return
    answer = await engine.ask(
        Plan,
        system=prompt(_PACKAGE, "plan_system.md", most=task.max_sub_queries),
        user=prompt(_PACKAGE, "plan_user.md", question=task.question, context=task.context),
        caller=caller,
        route="plan",
        meta=out.meta,
    )
    planned = list(dict.fromkeys(answer.value.sub_queries))
    out.questions = planned[: task.max_sub_queries]
    out.dropped = len(planned) - len(out.questions)


async def _answer(
    engine: Engine, task: ResearchTask, caller: Caller, sub: SubResult, out: Research
) -> None:
    user = prompt(
        _PACKAGE,
        "answer_user.md",
        sub_question=sub.question,
        question=task.question,
        context=task.context or "(none)",
    )
    system = prompt(_PACKAGE, "answer_system.md")
    answer = await engine.ask(
        SubAnswer, system=system, user=user, caller=caller, route="answer", meta=out.meta
    )
    sub.answer, sub.status = answer.value.answer, "answered"


async def _fan_out(
    engine: Engine, task: ResearchTask, caller: Caller, out: Research, settings: ResearchSettings
) -> list[int]:
    """Answer every sub-query; the HTTP statuses of the failures."""
    gate = asyncio.Semaphore(settings.concurrency)
    timeout = settings.sub_query_timeout_seconds
    out.results = [
        SubResult(id=f"q{i}", question=q, status="failed") for i, q in enumerate(out.questions, 1)
    ]
    failures: list[int] = []

    async def one(sub: SubResult) -> None:
        async with gate:
            try:
                async with asyncio.timeout(timeout):
                    await _answer(engine, task, caller, sub, out)
            except TimeoutError:
                sub.status, sub.error = "timed_out", f"no answer within {timeout:g} s"
                failures.append(504)
            except ApiError as exc:
                sub.error = exc.message
                failures.append(exc.status)

    await asyncio.gather(*(one(sub) for sub in out.results))
    return failures


async def _summarise(engine: Engine, task: ResearchTask, caller: Caller, out: Research) -> None:
    answered = [s for s in out.results if s.status == "answered"]
    answers = "\n\n".join(f"[{s.id}] {s.question}\n{s.answer}" for s in answered)
    answer = await engine.ask(
        summary_model(tuple(s.id for s in answered)),
        system=prompt(_PACKAGE, "summary_system.md"),
        user=prompt(_PACKAGE, "summary_user.md", question=task.question, answers=answers),
        caller=caller,
        route="summary",
        meta=out.meta,
    )
    out.summary = str(answer.value.model_dump()["summary"])


async def run_task(
    engine: Engine, task: ResearchTask, caller: Caller, settings: ResearchSettings
) -> Research:
    out = Research(questions=[])
    await _plan(engine, task, caller, out)
    failures = await _fan_out(engine, task, caller, out, settings)
    if len(failures) == len(out.results):
        detail = "; ".join(f"{s.id}: {s.error}" for s in out.results)
        if 503 in failures:
            raise ApiError(
                503, f"no sub-query was answered: {detail}", headers={"Retry-After": "1"}
            )
        raise ApiError(502, f"no sub-query was answered: {detail}", error="research_failed")
    await _summarise(engine, task, caller, out)
    return out


def citations(out: Research) -> list[dict[str, str | None]]:
    """The sub-answers the summary cites, in order of first citation."""
    by_id = {s.id: s for s in out.results}
    return [
        {"id": c, "question": by_id[c].question, "answer": by_id[c].answer}
        for c in cited(out.summary)
    ]
