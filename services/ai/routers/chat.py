"""``POST /chat/completions`` (OpenAI's shape, JSON or SSE), the models the chain serves and
the providers' state.

Request headers: ``X-AI-Cache`` (``auto``: cache deterministic requests, the default;
``force``: cache this one even if it is not; ``refresh``: ask a provider and replace the
entry; ``off``) and ``X-AI-Route`` (names the caller's route; picks the cache TTL). Response
headers: ``X-AI-Cache`` (``hit``, ``semantic_hit``, ``miss``, ``bypass``), ``X-AI-Provider``
and ``X-AI-Attempts`` (``provider=outcome`` in the order tried).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from services.ai.deps import ApiError, Caller, Router
from services.ai.engine import (
    CACHE_MODES,
    Answer,
    ChainExhaustedError,
    NoProviderError,
    RouteRequest,
)
from services.ai.providers import CallerError
from services.ai.routers import PREFIX
from services.common.errors import error_body
from services.common.openapi import chat_chunk_events

__all__ = ["ChatRequest", "Message", "router"]

router = APIRouter(prefix=PREFIX, tags=["chat"])


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; fields not listed here are passed on as sent."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=2000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=16)
    max_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False


def _headers(answer: Answer) -> dict[str, str]:
    return {
        "X-AI-Cache": answer.cache,
        "X-AI-Provider": answer.provider,
        "X-AI-Attempts": ",".join(f"{a.provider}={a.outcome}" for a in answer.attempts),
    }


_COMPLETION = {
    "description": "OpenAI's chat completion; with `stream: true`, its chunks as server-sent "
    "events (`data: <chunk>`, then `data: [DONE]`).",
    "content": {
        "application/json": {"schema": {"type": "object"}},
        **chat_chunk_events(),
    },
}


@router.post(
    "/chat/completions",
    summary="Chat completion through the provider chain",
    responses={200: _COMPLETION},
)
async def chat_completions(
    request: ChatRequest,
    identity: Caller,
    engine: Router,
    cache_mode: Annotated[str, Header(alias="X-AI-Cache")] = "auto",
    route: Annotated[
        str | None, Header(alias="X-AI-Route", pattern=r"^[A-Za-z0-9._/-]{1,100}$")
    ] = None,
) -> Response:
    if cache_mode not in CACHE_MODES:
        msg = f"one of {', '.join(CACHE_MODES)}"
        raise ApiError(422, f"X-AI-Cache: {msg}", fields=[{"field": "X-AI-Cache", "message": msg}])
    body = request.model_dump(exclude_unset=True)
    req = RouteRequest(identity=identity, body=body, route=route, cache_mode=cache_mode)
    try:
        answer = await engine.complete(req)
    except NoProviderError as exc:
        served = ", ".join(exc.served) or "any"
        msg = f"no configured provider serves {exc.model!r} (served: {served})"
        raise ApiError(422, f"model: {msg}", fields=[{"field": "model", "message": msg}]) from exc
    except ChainExhaustedError as exc:
        attempts = [{"provider": a.provider, "outcome": a.outcome} for a in exc.attempts]
        wait = str(int(exc.retry_after + 0.999))
        body503 = error_body(503, str(exc), error="providers_unavailable", attempts=attempts)
        return JSONResponse(body503, status_code=503, headers={"Retry-After": wait})
    except CallerError as exc:
        return JSONResponse(provider_refusal(exc.status, exc.body), status_code=exc.status)
    if answer.events is not None:
        headers = {**_headers(answer), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(answer.events, media_type="text/event-stream", headers=headers)
    return JSONResponse(answer.body, headers=_headers(answer))


def provider_refusal(status: int, body: object) -> dict[str, Any]:
    """The caller's error body for a provider's refusal (a 4xx that is the request's fault),
    with the provider's own words: OpenAI's shape (``{"error": {"message": ...}}``) or the
    platform's, which the Internal AI answers (``{"error": code, "message": ..., "fields":
    [{"field", "message"}]}``), whose ``fields`` are passed on."""
    message: object = None
    fields: list[dict[str, str]] | None = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(body.get("message"), str):
            message = body["message"]
            named = body.get("fields")
            if isinstance(named, list):
                fields = [
                    {"field": str(f["field"]), "message": str(f.get("message", ""))}
                    for f in named
                    if isinstance(f, dict) and "field" in f
                ] or None
    text = f"the provider refused the request: {message or status}"
    return error_body(status, text, error="provider_refused", fields=fields)


@router.get("/models", summary="Models the chain serves, and by whom")
async def models(_: Caller, engine: Router) -> dict[str, Any]:
    data = []
    for provider in engine.providers:
        for name, upstream in provider.spec.models.items():
            data.append({"id": name, "provider": provider.name, "upstream": upstream or name})
    return {"object": "list", "data": data}


@router.get("/providers", summary="The chain in order, with each provider's cooldown state")
async def providers(_: Caller, engine: Router) -> dict[str, Any]:
    return {
        "providers": [
            {"name": p.name, "state": p.breaker.state, "retry_in": round(p.breaker.retry_in(), 3)}
            for p in engine.providers
        ]
    }
