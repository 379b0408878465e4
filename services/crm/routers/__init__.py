"""The CRM's routers, one per domain; ``app.py`` only includes them."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.common.tenancy import Identity
from services.crm.deps import etag
from services.crm.events import ChangePublisher, Kind
from services.crm.store import ChildKind, CrmStore, IdempotencyKey

__all__ = ["PREFIX", "create_child", "created", "idempotency", "with_etag"]

PREFIX = "/api/v2/crm"


def idempotency(
    key: str | None, *, identity: Identity, request: Request, body: BaseModel
) -> IdempotencyKey | None:
    """The key scoped to the caller, with a fingerprint of this exact request."""
    if key is None:
        return None
    return IdempotencyKey.for_request(
        user_id=identity.user_id,
        key=key,
        method=request.method,
        path=request.url.path,
        body=body.model_dump(mode="json", exclude_unset=True),
    )


def with_etag(record: BaseModel, *, status_code: int = 200) -> JSONResponse:
    version = getattr(record, "version")  # noqa: B009 - every record model has it
    return JSONResponse(
        record.model_dump(mode="json"), status_code=status_code, headers={"ETag": etag(version)}
    )


def created(record: BaseModel, *, location: str, replayed: bool) -> JSONResponse:
    resp = with_etag(record, status_code=201)
    resp.headers["Location"] = location
    if replayed:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


async def create_child(
    collection: ChildKind,
    kind: Kind,
    *,
    contact_id: str,
    body: BaseModel,
    fields: dict[str, Any],
    request: Request,
    identity: Identity,
    store: CrmStore,
    events: ChangePublisher,
    idempotency_key: str | None,
) -> JSONResponse:
    """Create ``fields`` as a record of ``collection`` under a contact, honouring
    ``Idempotency-Key`` (fingerprinted on ``body``); publish its creation unless the request
    was a replay; answer 201 with its ETag and Location."""
    idem = idempotency(idempotency_key, identity=identity, request=request, body=body)
    record, replayed = await store.create_child(
        identity.tenant_id,
        collection,
        contact_id=contact_id,
        fields=fields,
        actor=identity.user_id,
        idem=idem,
    )
    if not replayed:
        await events.publish(
            identity.tenant_id, kind=kind, id=record.id, action="created", contact_id=contact_id
        )
    location = f"{PREFIX}/contacts/{contact_id}/{collection}/{record.id}"
    return created(record, location=location, replayed=replayed)
