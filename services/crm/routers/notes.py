"""Notes on a contact, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.crm.deps import Editor, Events, IdempotencyHeader, Limit, Store, Viewer
from services.crm.errors import EVERY_OPERATION, error_responses
from services.crm.models import Note, NoteCreate, Page
from services.crm.routers import PREFIX, create_child, with_etag

__all__ = ["router"]

router = APIRouter(
    prefix=f"{PREFIX}/contacts/{{contact_id}}/notes",
    tags=["notes"],
    responses=error_responses(*EVERY_OPERATION),
)


@router.post(
    "",
    status_code=201,
    response_model=Note,
    responses=error_responses(404, 422),
)
async def create_note(
    contact_id: str,
    body: NoteCreate,
    request: Request,
    identity: Editor,
    store: Store,
    events: Events,
    idempotency_key: IdempotencyHeader,
) -> JSONResponse:
    return await create_child(
        "notes",
        "note",
        contact_id=contact_id,
        body=body,
        fields=body.model_dump(),
        request=request,
        identity=identity,
        store=store,
        events=events,
        idempotency_key=idempotency_key,
    )


@router.get("", response_model=Page[Note], responses=error_responses(404, 422))
async def list_notes(
    contact_id: str,
    identity: Viewer,
    store: Store,
    limit: Limit,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> Page[Note]:
    items, next_cursor = await store.list_children(
        identity.tenant_id, "notes", contact_id=contact_id, limit=limit, cursor=cursor
    )
    return Page[Note](items=items, next_cursor=next_cursor)


@router.get("/{note_id}", response_model=Note, responses=error_responses(404))
async def get_note(contact_id: str, note_id: str, identity: Viewer, store: Store) -> JSONResponse:
    record = await store.get_child(
        identity.tenant_id, "notes", contact_id=contact_id, child_id=note_id
    )
    return with_etag(record)


@router.delete("/{note_id}", status_code=204, responses=error_responses(404))
async def delete_note(
    contact_id: str, note_id: str, identity: Editor, store: Store, events: Events
) -> Response:
    await store.delete_child(identity.tenant_id, "notes", contact_id=contact_id, child_id=note_id)
    await events.publish(
        identity.tenant_id, kind="note", id=note_id, action="deleted", contact_id=contact_id
    )
    return Response(status_code=204)
