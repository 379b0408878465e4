"""``/api/v1/schedules``: a tenant's workflow schedules, creating and deleting them (editor),
and each schedule's run history."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from services.analytics.deps import CallerDep, EditorDep
from services.analytics.schedules import Schedule, Scheduler, ScheduleRun, ScheduleSpec
from services.common.errors import ApiError

__all__ = ["SchedulerDep", "router", "schedule_summary"]

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])


def _scheduler(request: Request) -> Scheduler:
    scheduler: Scheduler = request.app.state.scheduler
    return scheduler


SchedulerDep = Annotated[Scheduler, Depends(_scheduler)]


def run_view(run: ScheduleRun) -> dict[str, Any]:
    return run.model_dump(mode="json")


async def schedule_summary(scheduler: Scheduler, tenant: str) -> list[dict[str, Any]]:
    """The tenant's schedules, each with its latest run (None before the first)."""
    out = []
    for s in await scheduler.store.of_tenant(tenant):
        runs = await scheduler.store.runs(tenant, s.id, limit=1)
        view = s.model_dump(mode="json", exclude={"tenant"})
        out.append(view | {"last_run": run_view(runs[0]) if runs else None})
    return out


async def _owned(scheduler: Scheduler, tenant: str, sid: str) -> Schedule:
    schedule = await scheduler.store.get(tenant, sid)
    if schedule is None:
        raise ApiError(404, f"schedule_id: no schedule {sid!r} of this tenant")
    return schedule


@router.get("", summary="The tenant's schedules with their latest run")
async def list_schedules(scheduler: SchedulerDep, caller: CallerDep) -> dict[str, Any]:
    return {"tenant": caller.tenant, "schedules": await schedule_summary(scheduler, caller.tenant)}


@router.post("", status_code=201, summary="Schedule a workflow (cron, zone, missed-run policy)")
async def create_schedule(
    body: ScheduleSpec, scheduler: SchedulerDep, caller: EditorDep
) -> dict[str, Any]:
    schedule = Schedule(
        id=uuid.uuid4().hex[:12],
        tenant=caller.tenant,
        created=scheduler.clock().astimezone(dt.UTC),
        **body.model_dump(),
    )
    await scheduler.store.put(schedule)
    return schedule.model_dump(mode="json", exclude={"tenant"}) | {"last_run": None}


@router.delete("/{schedule_id}", status_code=204, summary="Delete a schedule and its history")
async def delete_schedule(schedule_id: str, scheduler: SchedulerDep, caller: EditorDep) -> Response:
    await _owned(scheduler, caller.tenant, schedule_id)
    await scheduler.store.delete(caller.tenant, schedule_id)
    return Response(status_code=204)


@router.get("/{schedule_id}/runs", summary="A schedule's runs, newest due time first")
async def schedule_runs(
    schedule_id: str,
    scheduler: SchedulerDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    await _owned(scheduler, caller.tenant, schedule_id)
    runs = await scheduler.store.runs(caller.tenant, schedule_id, limit=limit)
    return {"schedule_id": schedule_id, "runs": [run_view(r) for r in runs]}
