"""The CRM's error responses: one JSON shape for every failure, and its OpenAPI.

``{"error": <code>, "message": <text>, "status": <int>}``, plus ``fields`` on 422
(``[{"field": "email", "message": ...}]``) so clients can point at the field: the
:class:`~services.crm.models.ErrorBody` model builds every body, and
:func:`error_responses` documents it for the statuses each operation can return. Store
exceptions map to 404 / 412 / 422 here; Firestore outages to 503 with ``Retry-After``.
Messages never contain tokens or identity headers.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.api_core import exceptions as gexc
from starlette.exceptions import HTTPException as StarletteHTTPException

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

_SOURCES = {"body", "query", "path", "header"}


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    412: "precondition_failed",
    413: "too_large",
    422: "validation_failed",
    503: "storage_unavailable",
}


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


class ApiError(Exception):
    """An error response; ``error`` defaults to the usual code for the status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error: str | None = None,
        headers: dict[str, str] | None = None,
        fields: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error or _CODES.get(status, "error")
        self.message = message
        self.headers = headers
        self.fields = fields


def field_error(field: str, message: str) -> ApiError:
    return ApiError(422, f"{field}: {message}", fields=[{"field": field, "message": message}])


def error_body(
    status: int,
    message: str,
    *,
    error: str | None = None,
    fields: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The JSON of an error response, checked against the documented model."""
    body = ErrorBody(
        error=error or _CODES.get(status, "error"),
        message=message,
        status=status,
        fields=fields,  # dicts, validated into FieldError
    )
    return body.model_dump(exclude_none=True)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _SOURCES:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _field_problem(err: Any) -> dict[str, str]:
    """One of pydantic's errors as ``{field, message}``, in words a client can act on."""
    loc = tuple(err.get("loc", ()))
    kind = err.get("type")
    if kind == "json_invalid":  # loc is ("body", <character offset>)
        position = loc[1] if len(loc) > 1 else 0
        return {"field": "body", "message": f"invalid JSON at position {position}"}
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        msg = "unknown field"
    return {"field": _field_name(loc), "message": msg}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status, exc.message, error=exc.error, fields=exc.fields),
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [_field_problem(err) for err in exc.errors()]
        names = list(dict.fromkeys(f["field"] for f in fields))
        if len(fields) == 1:
            message = f"{fields[0]['field']}: {fields[0]['message']}"
        else:
            message = f"invalid fields: {', '.join(names)}"
        return JSONResponse(error_body(422, message, fields=fields), status_code=422)

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

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status_code, str(exc.detail)),
            status_code=exc.status_code,
            headers=exc.headers,
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
