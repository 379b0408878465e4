"""``Cache-Control`` on the CRM's reads, so the gateway's response cache serves real traffic.

A successful ``GET`` under ``/api/v2/crm/contacts`` (contacts, and the interactions, notes and
tasks nested under a contact) is ``private, max-age=N``: the gateway keeps it for that caller
only (its cache key has the tenant and the user), and any write the gateway forwards under
``/api/v2/crm/contacts`` (its invalidation unit, the route prefix plus one segment) makes every
entry of the tenant under it unreachable at once. The other reads (``/statistics``,
``/tasks/due``) sum over records that writes under ``/contacts`` change, which those writes
would not invalidate, so they are ``no-store``. ``XYNERGY_CRM_CACHE_MAX_AGE_SECONDS=0`` makes
every read ``no-store``. A response that set its own ``Cache-Control`` keeps it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CacheHeaders"]


class CacheHeaders:
    def __init__(self, app: ASGIApp, *, prefix: str, cacheable: str, max_age: int) -> None:
        self.app = app
        self.prefix = prefix
        self.cacheable = cacheable
        self.private = f"private, max-age={max_age}".encode() if max_age > 0 else b"no-store"

    def _value(self, path: str) -> bytes:
        if path == self.cacheable or path.startswith(self.cacheable + "/"):
            return self.private
        return b"no-store"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not scope["path"].startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        value = self._value(scope["path"])

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = list(message.get("headers", ()))
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, marked)
