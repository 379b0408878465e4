"""``POST /tasks``: a research task run to its cited summary (synchronously)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from services.common.engine import CallerDep, EngineDep
from services.research.models import ResearchTask
from services.research.orchestrator import citations, run_task
from services.research.routers import PREFIX

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["tasks"])


@router.post("/tasks", summary="Plan, answer the sub-queries in parallel, summarise with citations")
async def research(
    task: ResearchTask, caller: CallerDep, engine: EngineDep, request: Request
) -> dict[str, Any]:
    out = await run_task(engine, task, caller, request.app.state.settings)
    failed = [s for s in out.results if s.status != "answered"]
    return {
        "question": task.question,
        "summary": out.summary,
        "citations": citations(out),
        "sub_queries": [s.model_dump() for s in out.results],
        "partial": bool(failed),
        "planned": task.sub_queries is None,
        "dropped": out.dropped,
        "ai": out.meta.model_dump(),
    }
