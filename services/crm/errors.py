"""The CRM's error responses: one JSON shape for every failure, and its OpenAPI.

``{"error": <code>, "message": <text>, "status": <int>}``, plus ``fields`` on 422
(``[{"field": "email", "message": ...}]``) so clients can point at the field: the platform's
one shape (:mod:`services.common.errors`, whose handlers the CRM installs);
:class:`~services.crm.models.ErrorBody` documents it and :func:`error_responses` lists it for
the statuses each operation can return. Store
exceptions map to 404 / 412 / 422 here; Firestore outages to 503 with ``Retry-After``.
Messages never contain tokens or identity headers.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from google.api_core import exceptions as gexc

from services.common.errors import ApiError, field_error
from services.common.errors import error_body as common_error_body
from services.common.errors import install_error_handlers as install_common_handlers
from services.crm.models import ErrorBody
from services.crm.paging import CursorError
from services.crm.store import (
    IdempotencyConflictError,
    NotFoundError,
    PreconditionFailedError,
)

__all__ = [
    "EVERY_OPERATION",
    "ApiError",
    "error_body",
    "error_responses",
    "field_error",
    "install_error_handlers",
]

log = logging.getLogger("xynergy.crm")


_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying."},
}
_DESCRIPTIONS: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "Refused by the gateway: a path that climbs above the root, or an unreadable "
        "`Content-Length` or body.",
        {},
    ),
    401: (
        "No valid identity: from the gateway, a missing, expired or forged bearer token "
        "(`check` says which check failed); at the CRM, no valid `X-Xynergy-Identity`.",
        {"WWW-Authenticate": {"description": "Bearer challenge (gateway)."}},
    ),
    403: (
        "The caller's roles do not allow this (`viewer` reads, `editor` writes, `admin` "
        "hard-deletes). Checked before any id is read.",
        {},
    ),
    404: ("No such record in your tenant (also for another tenant's ids and malformed ids).", {}),
    412: (
        "`If-Match` does not name the current version; the `ETag` header has it.",
        {"ETag": {"description": 'The current version, e.g. "4".'}},
    ),
    413: ("The body is over the limit (`XYNERGY_CRM_MAX_BODY_BYTES`, or the gateway's).", {}),
    422: (
        "A body field, query parameter or header is invalid; `fields` names each one "
        "(`body` for JSON that does not parse). A reused `Idempotency-Key` with a "
        "different request is `idempotency_key_reused`.",
        {},
    ),
    429: (
        "The gateway's rate limit (per user and route, per IP, per tenant).",
        {**_RETRY_AFTER, "RateLimit-Policy": {"description": "The limit that refused."}},
    ),
    503: (
        "Firestore did not answer in time (or the gateway's circuit breaker is open); "
        "retry after `Retry-After`.",
        _RETRY_AFTER,
    ),
}
# What any API operation can answer, whatever its parameters.
EVERY_OPERATION = (400, 401, 403, 413, 429, 503)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting :class:`ErrorBody` for these statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, headers = _DESCRIPTIONS[status]
        out[status] = {"model": ErrorBody, "description": description}
        if headers:
            out[status]["headers"] = headers
    return out


def error_body(
    status: int,
    message: str,
    *,
    error: str | None = None,
    fields: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The one error shape (services.common.errors); the CRM's 503 says what is down."""
    code = error or ("storage_unavailable" if status == 503 else None)
    return common_error_body(status, message, error=code, fields=fields)


def install_error_handlers(app: FastAPI) -> None:
    """The common handlers (ApiError, validation, HTTP errors), then the store's errors."""
    install_common_handlers(app)

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, __: NotFoundError) -> JSONResponse:
        return JSONResponse(error_body(404, "no such resource"), status_code=404)

    @app.exception_handler(PreconditionFailedError)
    async def stale(_: Request, exc: PreconditionFailedError) -> JSONResponse:
        return JSONResponse(
            error_body(412, "If-Match does not name the current version"),
            status_code=412,
            headers={"ETag": f'"{exc.current_version}"'},
        )

    @app.exception_handler(IdempotencyConflictError)
    async def reused(_: Request, __: IdempotencyConflictError) -> JSONResponse:
        msg = "this key was already used with a different request"
        return JSONResponse(
            error_body(
                422,
                msg,
                error="idempotency_key_reused",
                fields=[{"field": "Idempotency-Key", "message": msg}],
            ),
            status_code=422,
        )

    @app.exception_handler(CursorError)
    async def bad_cursor(_: Request, exc: CursorError) -> JSONResponse:
        return JSONResponse(
            error_body(
                422,
                f"cursor: {exc}",
                fields=[{"field": "cursor", "message": str(exc)}],
            ),
            status_code=422,
        )

    @app.exception_handler(gexc.GoogleAPICallError)
    @app.exception_handler(gexc.RetryError)
    async def storage_down(_: Request, exc: gexc.GoogleAPIError) -> JSONResponse:
        log.error("firestore call failed", extra={"fields": {"error": type(exc).__name__}})
        return JSONResponse(
            error_body(503, "the database did not answer; retry"),
            status_code=503,
            headers={"Retry-After": "1"},
        )
