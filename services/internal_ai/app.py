"""The Internal AI service's application factory: the model runner and an OpenAI-compatible
API (``/v1/embeddings``, ``/v1/chat/completions``, ``/v1/models``), the model's lifecycle
(``GET /admin/model``, ``POST /admin/model/load``, ``POST /admin/model/unload``) and health.

Callers are verified like every service's (the signed ``X-Xynergy-Identity``; the AI router
signs one per call), before a body is read: without a valid identity every operation but
health answers 401, whatever it was sent. A full queue is 429 with ``Retry-After``. Chat
answers say what they are: ``system_fingerprint`` is ``minilm-classification`` or
``minilm-extractive-summary``, and a ``xynergy`` field carries the task and the label scores.
Chat content is a text or a list of text parts (joined in order; a part of another type is a
422 naming it), and the messages' texts together are at most ``MAX_CHAT_CHARS`` characters
(a 422 naming ``messages``, as an embeddings text over ``MAX_INPUT_CHARS`` is a 422 naming
it). The OpenAPI documents every answer (services.internal_ai.bodies, the one error shape)
and this instance's input limits. An unload frees the model's memory; the next request loads
it again, so /readyz stays 200 once the model has loaded.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from email.message import Message
from typing import Annotated, Any, Literal, TypedDict

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute

from services.common.errors import ApiError, install_error_handlers
from services.common.identity import InternalIdentityVerifier, require_identity
from services.common.openapi import chat_chunk_events, error_responses
from services.common.settings import InternalIdentitySettings
from services.common.telemetry import configure_logging
from services.common.tenancy import Identity
from services.internal_ai.answers import Reply, answer_chat
from services.internal_ai.bodies import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatRequest,
    ChatUsage,
    Embedding,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbeddingsUsage,
    ModelCard,
    ModelList,
    ModelState,
    Readiness,
    Task,
)
from services.internal_ai.model import MODEL_ID, MiniLM
from services.internal_ai.runner import BusyError, ModelRunner
from services.internal_ai.settings import InternalAiSettings

__all__ = ["create_app"]

_MEANINGS = {
    400: "The body cannot be read: not UTF-8, or JSON nested too deeply.",
    401: "No valid signed identity (`X-Xynergy-Identity`): missing, malformed, signed with "
    "another key, expired or for another audience. Checked before the body is read.",
    403: "Loading or unloading the model needs the admin role.",
    422: "What is invalid, named in `fields` and first in `message`: an unknown path "
    "parameter, or in a body malformed JSON, a value of another JSON type than documented, a "
    "text over this instance's limits, a content part that is not text, or text that is not "
    "valid Unicode.",
    429: "The model's queue is full (`MAX_PENDING`); retry after `Retry-After` seconds.",
}


_NOT_READY = (
    "The model has never loaded in this process: `LOAD_AT_START` is false, "
    "`IDLE_UNLOAD_SECONDS` is 0 and neither an admin nor a request has loaded it yet. Once "
    "it has loaded, an unload only frees memory (the next request loads it again), so the "
    "service stays ready."
)


def _answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses these operations can give, in the platform's one error shape."""
    out = error_responses(*statuses)
    for status, entry in out.items():
        if status in _MEANINGS:
            entry["description"] = _MEANINGS[int(status)]
    return out


def _json_type(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this type as JSON (as its routes' strict default does:
    a body without a type is not)."""
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class _Verified(APIRoute):
    """A route that verifies the caller's signed identity before its body is read (a caller
    without one gets 401 whatever it sent), then reads a JSON body (:func:`_readable_json`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        reads_body = self.body_field is not None

        async def verified(request: Request) -> Response:
            request.state.identity = require_identity(request)
            if reads_body and _json_type(request.headers.get("content-type")):
                await _readable_json(request)
            return await handle(request)

        return verified


async def _readable_json(request: Request) -> None:
    """Parse the body once (Starlette keeps the result for FastAPI). Bytes that are not text
    and JSON nested past the parser's limit are a 400 saying so (FastAPI's own answer names
    neither); any other malformed JSON is left to FastAPI's 422, which says where."""
    if not await request.body():
        return
    try:
        await request.json()
    except RecursionError:
        raise ApiError(400, "body: JSON nested too deeply to read") from None
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"body: not UTF-8 (an invalid byte at position {exc.start})") from None
    except ValueError:
        return


async def _caller(request: Request) -> Identity:
    identity: Identity = request.state.identity  # set by _Verified before anything else
    return identity


Caller = Annotated[Identity, Depends(_caller)]


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


def _not_text(text: str) -> str | None:
    """Why ``text`` is not text the tokenizer can read (a lone surrogate, which JSON's
    ``\\ud800`` escapes can carry), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode (a lone surrogate at character {exc.start})"
    return None


def _refuse(field: str, problem: str) -> ApiError:
    return ApiError(422, f"{field}: {problem}", fields=[{"field": field, "message": problem}])


def _inputs(body: EmbeddingsRequest, settings: InternalAiSettings) -> list[str]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise _refuse("input", "at least one text")
    if len(texts) > settings.max_inputs:
        raise _refuse("input", f"at most {settings.max_inputs} texts")
    for index, text in enumerate(texts):
        field = "input" if isinstance(body.input, str) else f"input.{index}"
        if len(text) > settings.max_input_chars:
            raise _refuse(field, f"a text of at most {settings.max_input_chars} characters")
        problem = _not_text(text)
        if problem:
            raise _refuse(field, problem)
    return texts


def _chat_limit(settings: InternalAiSettings) -> str:
    return f"at most {settings.max_chat_chars} characters of text in all messages together"


def _messages(body: ChatRequest, settings: InternalAiSettings) -> list[dict[str, Any]]:
    """The messages as ``{role, content}`` with their text (text parts joined in order);
    422 when their texts together are over ``MAX_CHAT_CHARS`` (a summary is a model run per
    sentence) or a text is not valid Unicode."""
    texts = [message.plain_text() for message in body.messages]
    if sum(len(text) for text in texts) > settings.max_chat_chars:
        raise _refuse("messages", _chat_limit(settings))
    for index, message in enumerate(body.messages):
        if isinstance(message.content, list):
            named = [(f"messages.{index}.content.{n}.text", p.text)
                     for n, p in enumerate(message.content)]  # fmt: skip
        else:
            named = [(f"messages.{index}.content", message.content or "")]
        for field, text in named:
            problem = _not_text(text)
            if problem:
                raise _refuse(field, problem)
    return [{"role": m.role, "content": t} for m, t in zip(body.messages, texts, strict=True)]


def _document_limits(schema: dict[str, Any], settings: InternalAiSettings) -> None:
    """Put this instance's input limits (settings) into its OpenAPI: the embeddings' texts
    (``MAX_INPUTS``, ``MAX_INPUT_CHARS``) and the chat's (``MAX_CHAT_CHARS``: no text may be
    longer, and the messages' description says it is for all of them together, which JSON
    Schema cannot say)."""
    schemas = schema["components"]["schemas"]
    one, many = schemas["EmbeddingsRequest"]["properties"]["input"]["anyOf"]
    one["maxLength"] = settings.max_input_chars
    many.update(minItems=1, maxItems=settings.max_inputs)
    many["items"]["maxLength"] = settings.max_input_chars
    text, _, _ = schemas["ChatMessage"]["properties"]["content"]["anyOf"]
    text["maxLength"] = settings.max_chat_chars
    schemas["TextPart"]["properties"]["text"]["maxLength"] = settings.max_chat_chars
    messages = schemas["ChatRequest"]["properties"]["messages"]
    messages["description"] = f"The conversation: {_chat_limit(settings)}."


api = APIRouter(prefix="/v1", tags=["openai"], route_class=_Verified)

_COMPLETION = {
    "model": ChatCompletion,
    "description": "The answer; with `stream: true`, its chunks as server-sent events "
    "(`data: <chunk>`, then `data: [DONE]`).",
    "content": chat_chunk_events(),
}


@api.post("/embeddings", responses=_answers(400, 401, 422, 429))
async def embeddings(body: EmbeddingsRequest, request: Request) -> EmbeddingsResponse:
    texts = _inputs(body, request.app.state.settings)

    def work(model: MiniLM) -> tuple[list[list[float]], int]:
        vectors = model.embed(texts)
        tokens = sum(model.count_tokens(t) for t in texts)
        return vectors.tolist(), tokens

    vectors, tokens = await _use(request, work)
    return EmbeddingsResponse(
        data=[Embedding(index=i, embedding=v) for i, v in enumerate(vectors)],
        model=MODEL_ID,
        usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


class _Head(TypedDict):
    """The fields a chat answer and each of its stream's chunks share."""

    id: str
    created: int
    model: str
    system_fingerprint: str


@api.post(
    "/chat/completions",
    response_model=None,
    responses={200: _COMPLETION, **_answers(400, 401, 422, 429)},
)
async def chat(body: ChatRequest, request: Request) -> Response:
    settings: InternalAiSettings = request.app.state.settings
    messages = _messages(body, settings)

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
    usage = ChatUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
    base: _Head = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "created": int(time.time()),
        "model": MODEL_ID,
        "system_fingerprint": f"minilm-{reply.task.replace('_', '-')}",
    }
    if body.stream:
        include = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(
            _events(base, reply, usage.model_dump(), include), media_type="text/event-stream"
        )
    answer = ChatCompletion(
        **base,
        choices=[ChatChoice(index=0, message=AssistantMessage(content=reply.text))],
        usage=usage,
        xynergy=Task(task=reply.task, scores=reply.scores),
    )
    return JSONResponse(answer.model_dump())


async def _events(
    base: Mapping[str, object], reply: Reply, usage: dict[str, int], include_usage: bool
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


@api.get("/models", responses=_answers(401))
async def models() -> ModelList:
    return ModelList(data=[ModelCard(id=MODEL_ID, created=0, owned_by="xynergy")])


admin = APIRouter(prefix="/admin/model", tags=["lifecycle"], route_class=_Verified)


@admin.get("", responses=_answers(401))
async def model_state(request: Request) -> ModelState:
    return ModelState.model_validate(_runner(request).state())


@admin.post("/{action}", responses=_answers(401, 403, 422))
async def model_action(
    request: Request, identity: Caller, action: Literal["load", "unload"]
) -> ModelState:
    """Load the model now, or unload it to free its memory (the next request that needs it
    loads it again; the service stays ready). Admins only."""
    if "admin" not in identity.roles:
        raise ApiError(403, "this needs the admin role")
    runner = _runner(request)
    if action == "load":
        await runner.load()
    else:
        await runner.unload()
    return ModelState.model_validate(runner.state())


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

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": _NOT_READY}},
    )
    async def readyz() -> JSONResponse:
        """Ready once the model has loaded in this process (its files found and checked): an
        unload after that, an admin's or an idle one, frees its memory and the next request
        loads it again. With ``IDLE_UNLOAD_SECONDS`` the model loads on first use: ready."""
        ready = runner.model.loads > 0 or settings.idle_unload_seconds > 0
        body = {"status": "ready" if ready else "not_ready", "model": runner.state()}
        return JSONResponse(body, status_code=200 if ready else 503)

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        _document_limits(schema, settings)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
