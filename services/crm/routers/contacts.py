"""Contacts: create, get, list (filters, search, cursor pages), patch, soft/hard delete, restore."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.crm.deps import (
    Editor,
    Events,
    IdempotencyHeader,
    IfMatch,
    Limit,
    Store,
    Viewer,
    has_role,
)
from services.crm.errors import EVERY_OPERATION, ApiError, error_responses, field_error
from services.crm.models import Contact, ContactCreate, ContactPatch, ContactStatus, Page
from services.crm.routers import PREFIX, created, idempotency, with_etag
from services.crm.store import ContactFilters

__all__ = ["router"]

router = APIRouter(
    prefix=f"{PREFIX}/contacts",
    tags=["contacts"],
    responses=error_responses(*EVERY_OPERATION),
)

_ETAG_HEADER = {"ETag": {"description": 'The version, e.g. "3"; send it back in If-Match.'}}


@router.post(
    "",
    status_code=201,
    response_model=Contact,
    responses={201: {"headers": _ETAG_HEADER}, **error_responses(422)},
    summary="Create a contact",
)
async def create_contact(
    body: ContactCreate,
    request: Request,
    identity: Editor,
    store: Store,
    events: Events,
    idempotency_key: IdempotencyHeader,
) -> JSONResponse:
    """A retry with the same `Idempotency-Key` returns the first result, not a duplicate."""
    idem = idempotency(idempotency_key, identity=identity, request=request, body=body)
    contact, replayed = await store.create_contact(
        identity.tenant_id, fields=body.model_dump(), actor=identity.user_id, idem=idem
    )
    if not replayed:
        await events.publish(identity.tenant_id, kind="contact", id=contact.id, action="created")
    return created(contact, location=f"{router.prefix}/{contact.id}", replayed=replayed)


@router.get(
    "",
    response_model=Page[Contact],
    responses=error_responses(422),
    summary="List and search contacts",
)
async def list_contacts(
    identity: Viewer,
    store: Store,
    limit: Limit,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    tag: Annotated[str | None, Query(max_length=40)] = None,
    company: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    owner: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    status: ContactStatus | None = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            description="Prefix of the name, a word of it, or the email.",
        ),
    ] = None,
    order: Literal["created", "name"] = "created",
    deleted: Annotated[bool, Query(description="List soft-deleted contacts (the trash).")] = False,
) -> Page[Contact]:
    """Stable order: creation time (or name), then id; `next_cursor` continues."""
    if tag is not None and q is not None:
        raise field_error("tag", "cannot be combined with q; filter search results by other fields")
    items, next_cursor = await store.list_contacts(
        identity.tenant_id,
        filters=ContactFilters(
            deleted=deleted,
            status=status,
            tag=tag.strip().lower() if tag else None,
            company=company,
            owner=owner,
            search=q,
        ),
        order=order,
        limit=limit,
        cursor=cursor,
    )
    return Page[Contact](items=items, next_cursor=next_cursor)


@router.get(
    "/{contact_id}",
    response_model=Contact,
    responses={200: {"headers": _ETAG_HEADER}, **error_responses(404, 422)},
    summary="Get a contact",
)
async def get_contact(
    contact_id: str,
    identity: Viewer,
    store: Store,
    include_deleted: bool = False,
) -> JSONResponse:
    contact = await store.get_contact(
        identity.tenant_id, contact_id, include_deleted=include_deleted
    )
    return with_etag(contact)


@router.patch(
    "/{contact_id}",
    response_model=Contact,
    responses={200: {"headers": _ETAG_HEADER}, **error_responses(404, 412, 422)},
    summary="Update a contact",
)
async def patch_contact(
    contact_id: str,
    body: ContactPatch,
    identity: Editor,
    store: Store,
    events: Events,
    if_match: IfMatch,
) -> JSONResponse:
    """Only the fields sent change. With `If-Match`, a stale version answers 412."""
    changes = body.changes()
    contact, changed = await store.update_contact(
        identity.tenant_id,
        contact_id,
        changes=changes,
        expected_versions=if_match,
        actor=identity.user_id,
    )
    if changed:
        await events.publish(identity.tenant_id, kind="contact", id=contact.id, action="updated")
    return with_etag(contact)


@router.delete(
    "/{contact_id}",
    status_code=204,
    responses=error_responses(404, 412, 422),
    summary="Delete a contact (soft; hard for admins)",
)
async def delete_contact(
    contact_id: str,
    identity: Editor,
    store: Store,
    events: Events,
    if_match: IfMatch,
    hard: Annotated[
        bool, Query(description="Remove it and its interactions, notes and tasks for good (admin).")
    ] = False,
) -> Response:
    """Soft delete hides the contact until restored; `?hard=true` (admin only) purges it."""
    if hard:
        if not has_role(identity, "admin"):
            raise ApiError(403, "hard delete needs the admin role")
        await store.purge_contact(identity.tenant_id, contact_id, actor=identity.user_id)
        await events.publish(identity.tenant_id, kind="contact", id=contact_id, action="purged")
        return Response(status_code=204)
    contact, changed = await store.soft_delete_contact(
        identity.tenant_id, contact_id, expected_versions=if_match, actor=identity.user_id
    )
    if changed:
        await events.publish(identity.tenant_id, kind="contact", id=contact.id, action="deleted")
    return Response(status_code=204)


@router.post(
    "/{contact_id}/restore",
    response_model=Contact,
    responses={200: {"headers": _ETAG_HEADER}, **error_responses(404)},
    summary="Restore a soft-deleted contact",
)
async def restore_contact(
    contact_id: str, identity: Editor, store: Store, events: Events
) -> JSONResponse:
    """Idempotent by nature: restoring a live contact changes nothing."""
    contact, changed = await store.restore_contact(
        identity.tenant_id, contact_id, actor=identity.user_id
    )
    if changed:
        await events.publish(identity.tenant_id, kind="contact", id=contact.id, action="restored")
    return with_etag(contact)
