"""A small typed client of the AI router, for the engines built on it (Marketing, ASO,
Research): one call, one completion, errors as exceptions that say what to answer.

    from services.ai.client import AiClient, AiUnavailableError, ChatMessage

    ai = AiClient("http://ai:8083", http=httpx.AsyncClient(timeout=60))
    result = await ai.chat(
        [ChatMessage(role="user", content="Three taglines for ...")],
        identity=request.headers["x-xynergy-identity"],   # forward the caller's signed identity
        model="default", temperature=0, route="marketing.campaign",
    )
    result.text, result.provider, result.cache, result.usage.total_tokens

A service behind the gateway forwards the ``X-Xynergy-Identity`` header it received (the
router verifies it and bills the caller's tenant). :class:`AiUnavailableError` (every provider
failed; ``retry_after``) is a 503 for the engine's caller; :class:`AiRequestError` (the router
or a provider refused the request: ``status``, ``message``) is the engine's own bug or bad
input. The text is the model's: parse and validate it before use (a malformed answer is the
engine's 502).
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.identity import IDENTITY_HEADER

__all__ = [
    "AiClient",
    "AiRequestError",
    "AiUnavailableError",
    "ChatMessage",
    "ChatResult",
    "TokenUsage",
]


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str


class TokenUsage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ChatResult(BaseModel):
    text: str
    model: str
    provider: str = Field(description="Who answered (the cache's provider on a hit).")
    cache: str = Field(description="hit, semantic_hit, miss or bypass.")
    finish_reason: str | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)


class AiRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"AI router refused the request ({status}): {message}")
        self.status = status
        self.message = message


class AiUnavailableError(Exception):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AiClient:
    """``base_url`` is the router's (``http://host:port``); ``http`` is shared and pooled."""

    def __init__(self, base_url: str, *, http: httpx.AsyncClient) -> None:
        self.url = base_url.rstrip("/") + "/api/v1/ai/chat/completions"
        self.http = http

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        identity: str,
        model: str = "default",
        temperature: float | None = 0,
        max_tokens: int | None = None,
        route: str | None = None,
        cache: Literal["auto", "force", "off", "refresh"] = "auto",
        extra: dict[str, Any] | None = None,
    ) -> ChatResult:
        body: dict[str, Any] = {
            "model": model,
            "messages": [m.model_dump() for m in messages],
            **(extra or {}),
        }
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        headers = {IDENTITY_HEADER: identity, "X-AI-Cache": cache}
        if route:
            headers["X-AI-Route"] = route
        try:
            r = await self.http.post(self.url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise AiUnavailableError(f"AI router unreachable ({type(exc).__name__})", 1.0) from exc
        return _result(r)


def _result(r: httpx.Response) -> ChatResult:
    try:
        data = r.json()
    except ValueError:
        data = {}
    if r.status_code in (429, 502, 503, 504):
        wait = float(r.headers.get("retry-after") or 1)
        raise AiUnavailableError(str(data.get("message") or r.status_code), wait)
    if r.status_code >= 400:
        raise AiRequestError(r.status_code, str(data.get("message") or r.text[:300]))
    try:
        choice = data["choices"][0]
        return ChatResult(
            text=str(choice["message"].get("content") or ""),
            model=str(data.get("model", "")),
            provider=r.headers.get("x-ai-provider", ""),
            cache=r.headers.get("x-ai-cache", ""),
            finish_reason=choice.get("finish_reason"),
            usage=TokenUsage.model_validate(data.get("usage") or {}),
            raw=data,
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValidationError) as exc:
        raise AiUnavailableError(
            "the AI router answered something that is not a completion", 1.0
        ) from exc
