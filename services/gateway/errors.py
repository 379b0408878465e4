"""The gateway's one JSON error shape, and the adapters that give every error path it.

Every error the gateway itself answers is ``{"error": <code>, "message": <text>, "status":
<int>, ...}`` with ``Content-Type: application/json``: the proxy's refusals, FastAPI's and
Starlette's defaults (unknown paths, wrong methods, invalid parameters, unhandled errors), CORS
preflight refusals, and engine.io's answers to bad socket.io requests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["error_body", "error_code", "install_error_handlers", "json_errors", "send_json"]

log = logging.getLogger("xynergy.gateway.errors")

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "upstream_timeout",
}


def error_code(status: int) -> str:
    return _CODES.get(status, "error")


def error_body(status: int, error: str, message: str, **extra: Any) -> bytes:
    """The gateway's one JSON error shape: ``{error, message, status, ...}``."""
    return json.dumps({"error": error, "message": message, "status": status, **extra}).encode()


async def send_json(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Answer ``status`` with the JSON ``body`` over raw ASGI: ``headers`` first, then
    ``Content-Type: application/json`` and the ``Content-Length``, in one start message and one
    body message. The one responder of the gateway's raw-ASGI paths (the proxy's refusals, a
    refused stream handshake, rewritten plain-text errors), so they cannot drift apart."""
    headers = [
        *headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def install_error_handlers(app: FastAPI) -> None:
    """FastAPI's own errors (404, 405, 422, 500) in the gateway's shape."""

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
        body = {"error": error_code(exc.status_code), "message": detail, "status": exc.status_code}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        fields = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        body = {"error": "invalid_request", "message": "invalid request", "status": 422}
        return JSONResponse({**body, "fields": fields}, status_code=422)

    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        body = {"error": "internal_error", "message": "internal error", "status": 500}
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, crashed)


def json_errors(send: Send, *, error: str | None = None) -> Send:
    """``send`` that rewrites a non-JSON error response (status >= 400) into the gateway's
    shape, keeping the original text as the message (engine.io's plain-text errors, and
    Starlette's CORS preflight refusals with ``error="cors_refused"``)."""
    held: Message | None = None
    text = bytearray()

    async def wrapped(message: Message) -> None:
        nonlocal held
        if message["type"] == "http.response.start" and message["status"] >= 400:
            headers = dict(message.get("headers", ()))
            if not headers.get(b"content-type", b"").startswith(b"application/json"):
                held = message
                return
        if held is None or message["type"] != "http.response.body":
            await send(message)
            return
        text.extend(message.get("body", b""))
        if message.get("more_body", False):
            return
        status = held["status"]
        message_text = text.decode("utf-8", "replace").strip().strip('"') or _phrase(status)
        body = error_body(status, error or error_code(status), message_text)
        kept = [
            (k, v)
            for k, v in held.get("headers", ())
            if k not in (b"content-type", b"content-length")
        ]
        await send_json(send, status, body, kept)

    return wrapped
