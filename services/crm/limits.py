"""Bounds on one API request: its body size (413) and the time it may wait on Firestore (503).

Both are plain ASGI middlewares around the API routes only (``/healthz`` and friends take no
body and have their own budget). The body limit refuses a declared ``Content-Length`` over
it at once, whatever the route, as the gateway does, and stops a streamed body when it
grows past it. The deadline exists because a Firestore that does not answer (a dead host,
a partition) holds a gRPC call for minutes; past it the client gets the documented 503
with ``Retry-After`` and may retry, which every write makes safe (idempotency keys, ETags).
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.crm.errors import error_body

__all__ = ["BodyLimit", "Deadline"]


def _too_large(limit: int) -> str:
    return f"request body too large (the limit is {limit} bytes)"


class _ApiMiddleware:
    """Applies :meth:`api` to HTTP requests under ``prefix``; passes the rest through."""

    def __init__(self, app: ASGIApp, *, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            await self.api(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def api(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class BodyLimit(_ApiMiddleware):
    def __init__(self, app: ASGIApp, *, max_bytes: int, prefix: str) -> None:
        super().__init__(app, prefix=prefix)
        self.max_bytes = max_bytes

    async def api(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body = error_body(413, _too_large(self.max_bytes))
            await JSONResponse(body, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                # Raised inside FastAPI's body read, which passes HTTPExceptions through.
                raise HTTPException(413, _too_large(self.max_bytes))
            return message

        await self.app(scope, counting, send)


class Deadline(_ApiMiddleware):
    def __init__(self, app: ASGIApp, *, seconds: float, prefix: str) -> None:
        super().__init__(app, prefix=prefix)
        self.seconds = seconds

    async def api(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        deadline = asyncio.timeout(self.seconds)
        try:
            async with deadline:
                await self.app(scope, receive, tracking)
        except Exception:
            # Cancelled Firestore calls surface as whatever the client library makes of the
            # cancellation (a CANCELLED RPC error, a failed rollback), not only TimeoutError.
            if started or not deadline.expired():
                raise
            message = f"the database did not answer within {self.seconds:g} s; retry"
            await JSONResponse(
                error_body(503, message), status_code=503, headers={"Retry-After": "1"}
            )(scope, receive, send)
