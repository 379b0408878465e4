"""Interactions on a contact (call, email, meeting, slack, note), listed newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.crm.deps import Editor, Events, IdempotencyHeader, Limit, Store, Viewer
from services.crm.errors import EVERY_OPERATION, error_responses
from services.crm.models import Interaction, InteractionCreate, InteractionType, Page, utcnow
from services.crm.routers import PREFIX, create_child, with_etag

__all__ = ["router"]

router = APIRouter(
    prefix=f"{PREFIX}/contacts/{{contact_id}}/interactions",
    tags=["interactions"],
    responses=error_responses(*EVERY_OPERATION),
)


@router.post(
    "",
    status_code=201,
    response_model=Interaction,
    responses=error_responses(404, 422),
)
async def create_interaction(
    contact_id: str,
    body: InteractionCreate,
    request: Request,
    identity: Editor,
    store: Store,
    events: Events,
    idempotency_key: IdempotencyHeader,
) -> JSONResponse:
    """Log an interaction; `occurred_at` defaults to now. Honours `Idempotency-Key`."""
    fields = body.model_dump()
    fields["occurred_at"] = fields["occurred_at"] or utcnow()
    return await create_child(
        "interactions",
        "interaction",
        contact_id=contact_id,
        body=body,
        fields=fields,
        request=request,
        identity=identity,
        store=store,
        events=events,
        idempotency_key=idempotency_key,
    )


@router.get("", response_model=Page[Interaction], responses=error_responses(404, 422))
async def list_interactions(
    contact_id: str,
    identity: Viewer,
    store: Store,
    limit: Limit,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    type: InteractionType | None = None,
) -> Page[Interaction]:
    """Newest first (by `occurred_at`, then id)."""
    items, next_cursor = await store.list_children(
        identity.tenant_id,
        "interactions",
        contact_id=contact_id,
        limit=limit,
        cursor=cursor,
        equals={"type": type} if type else None,
    )
    return Page[Interaction](items=items, next_cursor=next_cursor)


@router.get("/{interaction_id}", response_model=Interaction, responses=error_responses(404))
async def get_interaction(
    contact_id: str, interaction_id: str, identity: Viewer, store: Store
) -> JSONResponse:
    record = await store.get_child(
        identity.tenant_id, "interactions", contact_id=contact_id, child_id=interaction_id
    )
    return with_etag(record)


@router.delete("/{interaction_id}", status_code=204, responses=error_responses(404))
async def delete_interaction(
    contact_id: str, interaction_id: str, identity: Editor, store: Store, events: Events
) -> Response:
    await store.delete_child(
        identity.tenant_id, "interactions", contact_id=contact_id, child_id=interaction_id
    )
    await events.publish(
        identity.tenant_id,
        kind="interaction",
        id=interaction_id,
        action="deleted",
        contact_id=contact_id,
    )
    return Response(status_code=204)
