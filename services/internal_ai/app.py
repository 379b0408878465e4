"""The Internal AI service's application factory: the model runner and an OpenAI-compatible
API (``/v1/embeddings``, ``/v1/chat/completions``, ``/v1/models``), the model's lifecycle
(``GET /admin/model``, ``POST /admin/model/load``, ``POST /admin/model/unload``) and health.

Callers are verified like every service's (the signed ``X-Xynergy-Identity``; the AI router
signs one per call). A full queue is 429 with ``Retry-After``. Chat answers say what they are:
``system_fingerprint`` is ``minilm-classification`` or ``minilm-extractive-summary``, and a
``xynergy`` field carries the task and the label scores.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from services.common.errors import ApiError, install_error_handlers
from services.common.identity import CurrentIdentity, InternalIdentityVerifier
from services.common.settings import InternalIdentitySettings
from services.common.telemetry import configure_logging
from services.internal_ai.answers import Reply, answer_chat
from services.internal_ai.model import MODEL_ID, MiniLM
from services.internal_ai.runner import BusyError, ModelRunner
from services.internal_ai.settings import InternalAiSettings

__all__ = ["create_app"]


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    input: str | list[str] = Field(description="A text or a list of texts.")
    model: str = MODEL_ID
    encoding_format: Literal["float"] = "float"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = MODEL_ID
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None


def _runner(request: Request) -> ModelRunner:
    runner: ModelRunner = request.app.state.runner
    return runner


async def _use(request: Request, work: Any) -> Any:
    try:
        return await _runner(request).run(work)
    except BusyError as exc:
        raise ApiError(
            429, f"the model is busy ({exc.pending} queued); retry", headers={"Retry-After": "1"}
        ) from exc


def _inputs(body: EmbeddingsRequest, settings: InternalAiSettings) -> list[str]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    problem = None
    if not texts:
        problem = "at least one text"
    elif len(texts) > settings.max_inputs:
        problem = f"at most {settings.max_inputs} texts"
    elif any(len(t) > settings.max_input_chars for t in texts):
        problem = f"texts of at most {settings.max_input_chars} characters"
    if problem:
        raise ApiError(422, f"input: {problem}", fields=[{"field": "input", "message": problem}])
    return texts


api = APIRouter(prefix="/v1", tags=["openai"])


@api.post("/embeddings")
async def embeddings(
    body: EmbeddingsRequest, request: Request, _: CurrentIdentity
) -> dict[str, Any]:
    texts = _inputs(body, request.app.state.settings)

    def work(model: MiniLM) -> tuple[list[list[float]], int]:
        vectors = model.embed(texts)
        tokens = sum(model.count_tokens(t) for t in texts)
        return vectors.tolist(), tokens

    vectors, tokens = await _use(request, work)
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": MODEL_ID, "usage": usage}


@api.post("/chat/completions", response_model=None)
async def chat(body: ChatRequest, request: Request, _: CurrentIdentity) -> Response:
    settings: InternalAiSettings = request.app.state.settings
    messages = [m.model_dump() for m in body.messages]

    def work(model: MiniLM) -> tuple[Reply, int, int]:
        reply = answer_chat(
            messages,
            model.embed,
            sentences_max=settings.summary_sentences,
            max_words=body.max_tokens,
        )
        prompt = sum(model.count_tokens(str(m.get("content") or "")) for m in messages)
        return reply, prompt, model.count_tokens(reply.text)

    reply, prompt, completion = await _use(request, work)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "created": int(time.time()),
        "model": MODEL_ID,
        "system_fingerprint": f"minilm-{reply.task.replace('_', '-')}",
    }
    if body.stream:
        include = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(
            _events(base, reply, usage, include), media_type="text/event-stream"
        )
    message = {"role": "assistant", "content": reply.text}
    return JSONResponse(
        {
            **base,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage,
            "xynergy": {"task": reply.task, "scores": reply.scores},
        }
    )


async def _events(
    base: dict[str, Any], reply: Reply, usage: dict[str, int], include_usage: bool
) -> AsyncIterator[bytes]:
    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    yield event(
        [{"index": 0, "delta": {"role": "assistant", "content": reply.text}, "finish_reason": None}]
    )
    yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if include_usage:
        yield event([], usage=usage)
    yield b"data: [DONE]\n\n"


@api.get("/models")
async def models(_: CurrentIdentity) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "xynergy"}],
    }


admin = APIRouter(prefix="/admin/model", tags=["lifecycle"])


@admin.get("")
async def model_state(request: Request, _: CurrentIdentity) -> dict[str, object]:
    return _runner(request).state()


@admin.post("/{action}")
async def model_action(
    request: Request, identity: CurrentIdentity, action: Literal["load", "unload"]
) -> dict[str, object]:
    if "admin" not in identity.roles:
        raise ApiError(403, "this needs the admin role")
    runner = _runner(request)
    if action == "load":
        await runner.load()
    else:
        await runner.unload()
    return runner.state()


def create_app(
    settings: InternalAiSettings | None = None,
    *,
    internal_settings: InternalIdentitySettings | None = None,
) -> FastAPI:
    settings = settings or InternalAiSettings()
    configure_logging(settings.log_level)
    runner = ModelRunner(
        MiniLM(threads=settings.threads),
        max_pending=settings.max_pending,
        idle_unload_seconds=settings.idle_unload_seconds,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.load_at_start:
            await runner.load()
        runner.start()
        try:
            yield
        finally:
            await runner.aclose()

    app = FastAPI(
        title="Xynergy Internal AI", version="0.1.0", lifespan=lifespan, redirect_slashes=False
    )
    state: Any = app.state
    state.settings = settings
    state.runner = runner
    state.identity_verifier = InternalIdentityVerifier(
        internal_settings or InternalIdentitySettings()
    )
    install_error_handlers(app)
    app.include_router(api)
    app.include_router(admin)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        loaded = runner.model.loaded or settings.idle_unload_seconds > 0
        body = {"status": "ready" if loaded else "not_ready", "model": runner.state()}
        return JSONResponse(body, status_code=200 if loaded else 503)

    return app
