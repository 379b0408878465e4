"""The CRM's routers, one per domain; ``app.py`` only includes them."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.common.tenancy import Identity
from services.crm.deps import etag
from services.crm.store import IdempotencyKey

__all__ = ["PREFIX", "created", "idempotency", "with_etag"]

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
