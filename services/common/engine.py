"""What the AI engines (Marketing, ASO, Research) share: their settings, app factory, prompts
read from files in their package, and one way to ask the AI router for JSON that a Pydantic
model validates.

An engine is a thin FastAPI service behind the gateway. It reads the caller from the signed
``X-Xynergy-Identity`` header (:data:`CallerDep`) and forwards that header to the router, which
bills the caller's tenant and caches per tenant. :meth:`Engine.ask` renders no prompt itself:
it sends the engine's system and user messages plus the JSON Schema of the answer it wants,
parses the text (a JSON object, possibly fenced or wrapped in prose), validates it, and on a
malformed answer asks once more with what was wrong (``repair_attempts``). What is still
malformed is a 502 naming the field; the router having no provider left is a 503 with
``Retry-After``; the router refusing the request is a 502 (never a 500, never a crash).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import string
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, Generic, TypeVar

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings

from services.ai.client import AiClient, AiRequestError, AiUnavailableError, ChatMessage
from services.common.errors import ApiError, install_error_handlers
from services.common.health import liveness_route
from services.common.identity import IDENTITY_HEADER, InternalIdentityVerifier, require_identity
from services.common.openapi import BEHIND_GATEWAY, error_responses
from services.common.settings import InternalIdentitySettings
from services.common.telemetry import configure_logging
from services.common.tenancy import Identity

__all__ = [
    "AiMeta",
    "Answer",
    "Caller",
    "CallerDep",
    "Engine",
    "EngineDep",
    "EngineSettings",
    "MalformedAnswerError",
    "create_engine_app",
    "parse_answer",
    "prompt",
]

log = logging.getLogger("xynergy.engines")
_ANSWERS = error_responses(*BEHIND_GATEWAY, 403, 422, 502, 504)
"""What an engine's operations can answer besides their success (the router behind it)."""
M = TypeVar("M", bound=BaseModel)


class EngineSettings(BaseSettings):
    """Settings every engine has; each engine's subclass sets its own env prefix
    (``XYNERGY_MARKETING_``, ``XYNERGY_ASO_``, ``XYNERGY_RESEARCH_``)."""

    ai_url: str = Field(
        default="http://127.0.0.1:8083",
        pattern=r"^https?://\S+$",
        description="The AI router (its /api/v1/ai/chat/completions is called).",
    )
    model: str = Field(
        default="gpt-4o-mini", min_length=1, description="Model asked of the router."
    )
    ai_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    repair_attempts: int = Field(
        default=1, ge=0, le=3, description="Asks again with the errors after a malformed answer."
    )
    log_level: str = "INFO"


@dataclass(frozen=True)
class Caller:
    """The verified caller and the signed header it came with (forwarded to the router)."""

    identity: Identity
    token: str


def _caller(request: Request) -> Caller:
    identity = require_identity(request)
    return Caller(identity=identity, token=request.headers[IDENTITY_HEADER])


CallerDep = Annotated[Caller, Depends(_caller)]


@functools.cache
def _template(package: str, name: str) -> string.Template:
    return string.Template(resources.files(package).joinpath("prompts", name).read_text())


def prompt(package: str, name: str, **values: object) -> str:
    """``<package>/prompts/<name>`` with ``$placeholders`` filled (a missing one raises)."""
    return _template(package, name).substitute({k: str(v) for k, v in values.items()})


class MalformedAnswerError(Exception):
    """The model's text is not the JSON asked for; ``fields`` say what was wrong."""

    def __init__(self, fields: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{f['field']}: {f['message']}" for f in fields))
        self.fields = fields


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _json_object(text: str) -> Any:
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise MalformedAnswerError([{"field": "answer", "message": "no JSON object in it"}])
    try:
        return json.loads(body[start : end + 1])
    except (ValueError, RecursionError) as exc:  # RecursionError: nested past the parser's limit
        msg = f"not valid JSON ({exc})"
        raise MalformedAnswerError([{"field": "answer", "message": msg}]) from exc


def parse_answer(text: str, model: type[M]) -> M:
    """The first JSON object in ``text`` (fenced or not) validated by ``model``."""
    data = _json_object(text)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "answer"
            fields.append({"field": where, "message": str(err["msg"])})
        raise MalformedAnswerError(fields) from exc


class AiMeta(BaseModel):
    """How the answer was obtained (summed over every call one request made)."""

    model: str = ""
    provider: str = ""
    cache: str = ""
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: AiMeta) -> None:
        self.model = self.model or other.model
        self.provider = self.provider or other.provider
        self.cache = self.cache or other.cache
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


@dataclass
class Answer(Generic[M]):
    value: M
    meta: AiMeta


class Engine:
    """An engine's way to the router (``app.state.engine``)."""

    def __init__(self, settings: EngineSettings, ai: AiClient, *, name: str) -> None:
        self.settings = settings
        self.ai = ai
        self.name = name

    async def ask(
        self,
        model: type[M],
        *,
        system: str,
        user: str,
        caller: Caller,
        route: str,
        meta: AiMeta | None = None,
    ) -> Answer[M]:
        """One validated answer, or :class:`ApiError` (502 malformed or refused, 503). Every
        call made is counted into ``meta`` (when given), failed ones too."""
        schema = json.dumps(model.model_json_schema(), separators=(",", ":"))
        instructions = f"{system}\n\nAnswer with one JSON object (no prose) valid against "
        messages = [
            ChatMessage(role="system", content=f"{instructions}this JSON Schema:\n{schema}"),
            ChatMessage(role="user", content=user),
        ]
        meta = AiMeta() if meta is None else meta
        for attempt in range(self.settings.repair_attempts + 1):
            text = await self._chat(messages, caller=caller, route=route, meta=meta)
            try:
                return Answer(parse_answer(text, model), meta)
            except MalformedAnswerError as exc:
                error = exc
                log.warning(
                    "malformed model answer",
                    extra={"fields": {"route": route, "attempt": attempt, "errors": str(exc)}},
                )
            messages += [
                ChatMessage(role="assistant", content=text),
                ChatMessage(role="user", content=f"That was not valid ({error}). Answer again."),
            ]
        raise ApiError(
            502,
            f"the model's answer was malformed: {error}",
            error="malformed_model_answer",
            fields=error.fields,
        )

    async def _chat(
        self, messages: list[ChatMessage], *, caller: Caller, route: str, meta: AiMeta
    ) -> str:
        try:
            result = await self.ai.chat(
                messages,
                identity=caller.token,
                model=self.settings.model,
                temperature=0,
                route=f"{self.name}.{route}",
                extra={"response_format": {"type": "json_object"}},
            )
        except AiUnavailableError as exc:
            wait = str(max(1, int(exc.retry_after + 0.999)))
            msg = f"the AI router has no provider available: {exc}"
            raise ApiError(503, msg, headers={"Retry-After": wait}) from exc
        except AiRequestError as exc:
            raise ApiError(502, str(exc), error="ai_refused") from exc
        usage = result.usage
        meta.add(
            AiMeta(
                model=result.model,
                provider=result.provider,
                cache=result.cache,
                calls=1,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )
        )
        return result.text


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(_engine)]


def _health(app: FastAPI, engine: Engine) -> None:
    liveness_route(app)

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        try:
            r = await engine.ai.http.get(engine.settings.ai_url.rstrip("/") + "/healthz")
            check = "ok" if r.status_code == 200 else f"answered {r.status_code}"
        except httpx.HTTPError as exc:
            check = f"unreachable ({type(exc).__name__})"
        ready = check == "ok"
        body = {"status": "ready" if ready else "not_ready", "checks": {"ai_router": check}}
        return JSONResponse(body, status_code=200 if ready else 503)


def create_engine_app(
    *,
    name: str,
    title: str,
    settings: EngineSettings,
    routers: Iterable[APIRouter],
    internal_settings: InternalIdentitySettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """An engine's app; ``transport`` replaces the network to the router (tests)."""
    configure_logging(settings.log_level)
    http = httpx.AsyncClient(timeout=settings.ai_timeout_seconds, transport=transport)
    engine = Engine(settings, AiClient(settings.ai_url, http=http), name=name)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await http.aclose()

    app = FastAPI(title=title, version="0.1.0", lifespan=lifespan, redirect_slashes=False)
    state: Any = app.state
    state.settings = settings
    state.engine = engine
    state.identity_verifier = InternalIdentityVerifier(
        internal_settings or InternalIdentitySettings()
    )
    install_error_handlers(app)
    for router in routers:
        app.include_router(router, responses=_ANSWERS)
    _health(app, engine)
    return app
