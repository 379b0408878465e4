"""The AI router's side of ``POST /api/v1/ai/chat/completions`` as an httpx MockTransport, for
the engines' unit tests (Marketing, ASO and Research import it from here).

``respond(route, body)`` (sync or async) says what the router answers a request with: a
``str`` is the model's text in a completion (``X-AI-Provider: openai``), an ``int`` an error
status in the router's error shape (503 with ``Retry-After``). Every request is kept with its
headers; ``max_in_flight`` counts how many were being answered at once.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from services.common.identity import (
    IDENTITY_HEADER,
    InternalIdentitySigner,
    InternalIdentityVerifier,
)
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity

INTERNAL = InternalIdentitySettings(signing_key="k" * 40)  # type: ignore[arg-type]


def caller(tenant: str = "acme") -> Identity:
    return Identity(user_id="u-1", tenant_id=tenant, roles=("editor",))


def identity(tenant: str = "acme") -> dict[str, str]:
    return {IDENTITY_HEADER: InternalIdentitySigner(INTERNAL).sign(caller(tenant))}


def forwarded(headers: Mapping[str, str]) -> Identity:
    """The caller a forwarded identity header names (its token's times differ per second)."""
    return InternalIdentityVerifier(INTERNAL).verify(headers[IDENTITY_HEADER])


@dataclass
class Seen:
    route: str
    body: dict[str, Any]
    headers: httpx.Headers

    @property
    def system(self) -> str:
        return str(self.body["messages"][0]["content"])

    @property
    def user(self) -> str:
        return str(self.body["messages"][1]["content"])


@dataclass
class RouterStub:
    respond: Callable[[str, dict[str, Any]], Any]
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def routes(self) -> list[str]:
        return [s.route for s in self.seen]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/ai/chat/completions"
        body = json.loads(request.content)
        route = request.headers.get("x-ai-route", "")
        self.seen.append(Seen(route, body, request.headers))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            out = self.respond(route, body)
            if inspect.isawaitable(out):
                out = await out
        finally:
            self.in_flight -= 1
        if isinstance(out, int):
            headers = {"Retry-After": "2"} if out == 503 else {}
            error = {"error": "unavailable", "message": "every provider failed", "status": out}
            return httpx.Response(out, json=error, headers=headers)
        completion = {
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": out},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
        return httpx.Response(
            200, json=completion, headers={"X-AI-Provider": "openai", "X-AI-Cache": "miss"}
        )


@contextlib.asynccontextmanager
async def engine_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The engine app in this event loop (lifespan run), through httpx."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://engine") as c,
    ):
        yield c


def answering(*texts: str | int) -> RouterStub:
    """A stub answering the given texts (or statuses) in order, then the last one again."""
    queue = list(texts)

    def respond(route: str, body: dict[str, Any]) -> str | int:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return RouterStub(respond)


def as_json(value: Any) -> str:
    return json.dumps(value)
