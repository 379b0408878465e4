"""``/phase3/workflow``: the orchestrator's workflows, runs and costs; running one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from services.analytics.deps import AnalyticsDep, CallerDep, EditorDep
from services.analytics.workflows import STANDARD, WorkflowError, run_view
from services.common.errors import ApiError

__all__ = ["router", "workflow_summary"]

router = APIRouter(prefix="/phase3/workflow", tags=["workflow"])


class ExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: str = Field(default="balanced", description="cost, speed or balanced")
    inputs: dict[str, str] = Field(default_factory=dict)


async def workflow_summary(a: AnalyticsDep, tenant: str) -> dict[str, Any]:
    runs = await a.store.runs(tenant, limit=20)
    return {
        "recent_runs": [run_view(r) for r in runs],
        "running": [
            {
                "workflow": r["workflow"],
                "goal": r["goal"],
                "steps": {n: s.status for n, s in r["steps"].items()},
            }
            for r in a.orchestrator.running.values()
            if r["tenant"] == tenant
        ],
        "total_cost_usd": sum(r.cost_usd for r in runs),
        "succeeded": sum(r.status == "succeeded" for r in runs),
        "failed": sum(r.status == "failed" for r in runs),
    }


@router.get("/orchestration-dashboard", summary="Workflows, predicted costs, recent runs")
async def dashboard(a: AnalyticsDep, caller: CallerDep) -> dict[str, Any]:
    workflows = []
    for w in STANDARD.values():
        predicted = await a.orchestrator.predict(caller.tenant, w, "balanced")
        workflows.append(
            {
                "name": w.name,
                "description": w.description,
                "inputs": list(w.inputs),
                "steps": [
                    {
                        "name": s.name,
                        "kind": s.kind,
                        "depends_on": list(s.depends_on),
                        "predicted_cost_usd": predicted[s.name],
                    }
                    for s in w.steps
                ],
            }
        )
    return {
        "tenant": caller.tenant,
        "workflows": workflows,
        **await workflow_summary(a, caller.tenant),
    }


@router.post("/execute/{workflow_name}", summary="Run a workflow; its run and costs are recorded")
async def execute(
    workflow_name: str, a: AnalyticsDep, caller: EditorDep, body: ExecuteRequest | None = None
) -> dict[str, Any]:
    body = body or ExecuteRequest()
    try:
        run = await a.orchestrator.execute(
            tenant=caller.tenant,
            identity=caller.token,
            name=workflow_name,
            goal=body.goal,
            inputs=body.inputs,
        )
    except WorkflowError as exc:
        field = str(exc).split(":")[0]
        status = 404 if field == "workflow_name" else 422
        raise ApiError(status, str(exc), fields=[{"field": field, "message": str(exc)}]) from exc
    return run_view(run)
