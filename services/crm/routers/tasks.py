"""Tasks on a contact (title, due date, open/done, assignee) and "tasks due" across contacts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.crm.deps import Editor, Events, IdempotencyHeader, IfMatch, Limit, Store, Viewer
from services.crm.errors import EVERY_OPERATION, error_responses
from services.crm.models import Day, Page, Task, TaskCreate, TaskPatch, TaskStatus, utcnow
from services.crm.routers import PREFIX, create_child, with_etag

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["tasks"], responses=error_responses(*EVERY_OPERATION))
_BASE = "/contacts/{contact_id}/tasks"


@router.get("/tasks/due", response_model=Page[Task], responses=error_responses(422))
async def tasks_due(
    identity: Viewer,
    store: Store,
    limit: Limit,
    before: Annotated[
        Day | None, Query(description="Due on or before this day (UTC, YYYY-MM-DD); default today.")
    ] = None,
    assignee: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> Page[Task]:
    """Open tasks across all live contacts, soonest due first. Overdue ones come first."""
    items, next_cursor = await store.tasks_due(
        identity.tenant_id,
        before=before or utcnow().date(),
        assignee=assignee,
        limit=limit,
        cursor=cursor,
    )
    return Page[Task](items=items, next_cursor=next_cursor)


@router.post(_BASE, status_code=201, response_model=Task, responses=error_responses(404, 422))
async def create_task(
    contact_id: str,
    body: TaskCreate,
    request: Request,
    identity: Editor,
    store: Store,
    events: Events,
    idempotency_key: IdempotencyHeader,
) -> JSONResponse:
    return await create_child(
        "tasks",
        "task",
        contact_id=contact_id,
        body=body,
        fields=body.model_dump(),
        request=request,
        identity=identity,
        store=store,
        events=events,
        idempotency_key=idempotency_key,
    )


@router.get(_BASE, response_model=Page[Task], responses=error_responses(404, 422))
async def list_tasks(
    contact_id: str,
    identity: Viewer,
    store: Store,
    limit: Limit,
    status: TaskStatus | None = None,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> Page[Task]:
    """Oldest first."""
    items, next_cursor = await store.list_children(
        identity.tenant_id,
        "tasks",
        contact_id=contact_id,
        limit=limit,
        cursor=cursor,
        equals={"status": status} if status else None,
    )
    return Page[Task](items=items, next_cursor=next_cursor)


@router.get(_BASE + "/{task_id}", response_model=Task, responses=error_responses(404))
async def get_task(contact_id: str, task_id: str, identity: Viewer, store: Store) -> JSONResponse:
    record = await store.get_child(
        identity.tenant_id, "tasks", contact_id=contact_id, child_id=task_id
    )
    return with_etag(record)


@router.patch(
    _BASE + "/{task_id}",
    response_model=Task,
    responses=error_responses(404, 412, 422),
)
async def patch_task(
    contact_id: str,
    task_id: str,
    body: TaskPatch,
    identity: Editor,
    store: Store,
    events: Events,
    if_match: IfMatch,
) -> JSONResponse:
    """Change title, due date, status or assignee; `If-Match` as for contacts."""
    changes = body.changes()
    task, changed = await store.update_task(
        identity.tenant_id,
        contact_id=contact_id,
        task_id=task_id,
        changes=changes,
        expected_versions=if_match,
        actor=identity.user_id,
    )
    if changed:
        await events.publish(
            identity.tenant_id, kind="task", id=task_id, action="updated", contact_id=contact_id
        )
    return with_etag(task)


@router.delete(_BASE + "/{task_id}", status_code=204, responses=error_responses(404))
async def delete_task(
    contact_id: str, task_id: str, identity: Editor, store: Store, events: Events
) -> Response:
    await store.delete_child(identity.tenant_id, "tasks", contact_id=contact_id, child_id=task_id)
    await events.publish(
        identity.tenant_id, kind="task", id=task_id, action="deleted", contact_id=contact_id
    )
    return Response(status_code=204)
