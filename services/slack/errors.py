"""The Slack service's error responses: one JSON shape, ``{"error", "message", "status"}``
(plus ``fields`` on 422), as the gateway and the CRM answer.

A tenant without a usable connection gets 409 with :meth:`NotConnectedError.body` (the
OAuthConnection and its authorization URL). Slack's ``ok: false`` answers map onto statuses
here (:func:`from_slack`); ``ratelimited`` is 429 with Slack's ``Retry-After``. No message ever
carries a token: Slack's error codes and our own words only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from slack_sdk.errors import SlackApiError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.oauth_tokens import NotConnectedError

__all__ = ["ApiError", "error_body", "from_slack", "install_error_handlers"]

log = logging.getLogger("xynergy.slack")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "validation_failed",
    429: "rate_limited",
    502: "upstream_error",
    503: "unavailable",
    504: "upstream_timeout",
}
_NOT_FOUND = {"channel_not_found", "users_not_found", "user_not_found", "thread_not_found"}
_INVALID = {
    "invalid_arguments",
    "invalid_cursor",
    "invalid_limit",
    "no_text",
    "msg_too_long",
    "no_query",
    "invalid_blocks",
}
_TOKEN_REFUSED = {
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
}


class ApiError(Exception):
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


def error_body(
    status: int, message: str, *, error: str | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"error": error or _CODES.get(status, "error"), "message": message, "status": status}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def from_slack(exc: SlackApiError, *, connection: str) -> ApiError:
    """Slack's answer as our error: its code in the message, never the response body."""
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    code = str(data.get("error") or "unknown_error")
    status = exc.response.status_code
    if status == 429 or code == "ratelimited":
        retry = str(exc.response.headers.get("retry-after") or "1")
        return ApiError(
            429, "Slack rate-limited this call; retry later", headers={"Retry-After": retry}
        )
    if code in _NOT_FOUND:
        return ApiError(404, f"Slack: {code}", error=code)
    if code in _INVALID:
        return ApiError(422, f"Slack refused the arguments: {code}", error=code)
    if code == "missing_scope":
        needed = data.get("needed") or "?"
        msg = f"OAuthConnection {connection} lacks the Slack scope {needed}; re-authorize with it"
        return ApiError(403, msg, error="missing_scope")
    if code == "not_allowed_token_type":
        msg = f"Slack does not allow this call with the bot token of OAuthConnection {connection}"
        return ApiError(403, msg, error=code)
    if code in _TOKEN_REFUSED:
        msg = f"Slack refused the token of OAuthConnection {connection} ({code}); re-authorize"
        return ApiError(409, msg, error="oauth_token_refused")
    return ApiError(502, f"Slack answered {code}", error="upstream_error")


def _fields(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        if err.get("type") == "json_invalid":
            out.append({"field": "body", "message": "invalid JSON"})
            continue
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append({"field": ".".join(loc) or "body", "message": msg})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        body = error_body(exc.status, exc.message, error=exc.error, fields=exc.fields)
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(NotConnectedError)
    async def not_connected(_: Request, exc: NotConnectedError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=409)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _fields(exc)
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse(error_body(422, message, fields=fields), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = error_body(exc.status_code, str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
