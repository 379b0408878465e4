"""The CRM's error responses: one JSON shape for every failure.

``{"error": <code>, "message": <text>, "status": <int>}``, plus ``fields`` on 422
(``[{"field": "email", "message": ...}]``) so clients can point at the field. Store
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

from services.crm.paging import CursorError
from services.crm.store import (
    IdempotencyConflictError,
    NotFoundError,
    PreconditionFailedError,
)

__all__ = ["ApiError", "field_error", "install_error_handlers"]

log = logging.getLogger("xynergy.crm")

_SOURCES = {"body", "query", "path", "header"}


_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    412: "precondition_failed",
    422: "validation_failed",
    503: "storage_unavailable",
}


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


def _body(status: int, message: str, *, error: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "error": error or _CODES.get(status, "error"),
        "message": message,
        "status": status,
        **extra,
    }


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _SOURCES:
        parts = parts[1:]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        extra = {"fields": exc.fields} if exc.fields is not None else {}
        return JSONResponse(
            _body(exc.status, exc.message, error=exc.error, **extra),
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = []
        for err in exc.errors():
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                msg = "unknown field"
            fields.append({"field": _field_name(err.get("loc", ())), "message": msg})
        names = ", ".join(dict.fromkeys(f["field"] for f in fields))
        return JSONResponse(
            _body(422, f"invalid fields: {names}", fields=fields),
            status_code=422,
        )

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, __: NotFoundError) -> JSONResponse:
        return JSONResponse(_body(404, "no such resource"), status_code=404)

    @app.exception_handler(PreconditionFailedError)
    async def stale(_: Request, exc: PreconditionFailedError) -> JSONResponse:
        return JSONResponse(
            _body(412, "If-Match does not name the current version"),
            status_code=412,
            headers={"ETag": f'"{exc.current_version}"'},
        )

    @app.exception_handler(IdempotencyConflictError)
    async def reused(_: Request, __: IdempotencyConflictError) -> JSONResponse:
        msg = "this key was already used with a different request"
        return JSONResponse(
            _body(
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
            _body(
                422,
                f"cursor: {exc}",
                fields=[{"field": "cursor", "message": str(exc)}],
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            _body(exc.status_code, str(exc.detail)),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(gexc.GoogleAPICallError)
    async def storage_down(_: Request, exc: gexc.GoogleAPICallError) -> JSONResponse:
        log.error("firestore call failed", extra={"fields": {"error": type(exc).__name__}})
        return JSONResponse(
            _body(503, "the database did not answer; retry"),
            status_code=503,
            headers={"Retry-After": "1"},
        )
