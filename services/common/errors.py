"""The one error shape of the platform's services, and the FastAPI handlers that give it.

Every error is ``{"error": <code>, "message": <text>, "status": <int>}``, plus ``fields`` on
422 (``[{"field": "email", "message": ...}]``) so a client can point at the field, as the
gateway answers its own refusals. A service raises :class:`ApiError` (or lets FastAPI's
validation and Starlette's HTTP errors happen) and calls :func:`install_error_handlers` once;
a service with errors of its own (the CRM's store) adds handlers that build their bodies with
:func:`error_body`. A tenant without a usable connection gets 409 with
:meth:`services.common.oauth_tokens.NotConnectedError.body`. Messages never carry a token.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.oauth_tokens import NotConnectedError, TokenSecretNotOwnedError

__all__ = [
    "CODES",
    "ApiError",
    "error_body",
    "field_error",
    "field_problems",
    "install_error_handlers",
]

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "too_large",
    422: "validation_failed",
    429: "rate_limited",
    502: "upstream_error",
    503: "unavailable",
    504: "upstream_timeout",
}
_SOURCES = {"body", "query", "path", "header"}


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
        self.error = error or CODES.get(status, "error")
        self.message = message
        self.headers = headers
        self.fields = fields


def error_body(
    status: int, message: str, *, error: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The JSON of an error response; ``extra`` members that are None are left out."""
    body = {"error": error or CODES.get(status, "error"), "message": message, "status": status}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def field_error(field: str, message: str) -> ApiError:
    """A 422 naming one field."""
    return ApiError(422, f"{field}: {message}", fields=[{"field": field, "message": message}])


def _field_problem(err: Any) -> dict[str, str]:
    """One of pydantic's errors as ``{field, message}``, in words a client can act on."""
    loc = [str(p) for p in err.get("loc", ())]
    kind = err.get("type")
    if kind == "json_invalid":  # loc is ("body", <character offset>)
        position = loc[1] if len(loc) > 1 else 0
        return {"field": "body", "message": f"invalid JSON at position {position}"}
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        msg = "unknown field"
    if loc and loc[0] in _SOURCES:
        loc = loc[1:]
    return {"field": ".".join(loc) or "body", "message": msg}


def field_problems(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    """(message, fields) of a request that failed validation."""
    fields = [_field_problem(err) for err in exc.errors()]
    if len(fields) == 1:
        return f"{fields[0]['field']}: {fields[0]['message']}", fields
    names = list(dict.fromkeys(f["field"] for f in fields))
    return f"invalid fields: {', '.join(names)}", fields


def install_error_handlers(app: FastAPI) -> None:
    """Answer ApiError, validation errors, Starlette's HTTP errors, NotConnectedError and
    TokenSecretNotOwnedError in the one shape."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        body = error_body(exc.status, exc.message, error=exc.error, fields=exc.fields)
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(NotConnectedError)
    async def not_connected(_: Request, exc: NotConnectedError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=409)

    @app.exception_handler(TokenSecretNotOwnedError)
    async def not_owned(_: Request, exc: TokenSecretNotOwnedError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, fields = field_problems(exc)
        return JSONResponse(error_body(422, message, fields=fields), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = error_body(exc.status_code, str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
