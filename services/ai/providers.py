"""One OpenAI-compatible provider of the chain, called through the official ``openai`` client.

The client is made once per provider with ``max_retries=0`` (the router decides what happens
after a failure) and its own pooled ``httpx.AsyncClient``. Answers are read raw
(``with_raw_response`` / ``with_streaming_response``), so the caller gets the provider's JSON or
SSE bytes unchanged and nothing is rebuilt from typed objects. Failures are sorted:

- :class:`ProviderFailedError` (the chain moves on): timeout, unreachable, 429, 5xx, and 401/403/
  404 (our key or our model mapping is wrong, not the caller's request);
- :class:`CallerError` (returned to the caller, no fallback): any other 4xx, e.g. 400.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import httpx
import openai

from services.ai.breaker import Cooldown
from services.ai.settings import ProviderSpec
from services.common.identity import IDENTITY_HEADER

__all__ = ["CallerError", "Provider", "ProviderFailedError", "Usage", "cost_picousd", "sse_events"]

_PICO = Decimal(1_000_000)  # USD per 1M tokens x tokens x 1e6 = pico-USD


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def of(cls, data: Any) -> Usage:
        usage = data.get("usage") if isinstance(data, dict) else None
        if not isinstance(usage, dict):
            return cls()
        return cls(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def cost_picousd(spec: ProviderSpec, upstream_model: str, usage: Usage) -> int:
    """Tokens x the configured price, in pico-USD (exact for prices with up to 6 decimals)."""
    price = spec.prices.get(upstream_model)
    if price is None:
        return 0
    total = usage.prompt_tokens * price.prompt + usage.completion_tokens * price.completion
    return int((total * _PICO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


class ProviderFailedError(Exception):
    """The provider could not answer; the next one in the chain is tried."""

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class CallerError(Exception):
    """The provider refused the request itself (4xx): relayed, no fallback."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"provider refused the request ({status})")
        self.status = status
        self.body = body


def _retry_after(headers: httpx.Headers) -> float | None:
    try:
        return float(headers["retry-after"])
    except (KeyError, ValueError):
        return None


def classify(exc: Exception) -> Exception:
    """An ``openai`` (or transport) exception as a failure or a caller error."""
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return ProviderFailedError("timeout", "timed out")
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return ProviderFailedError("unreachable", f"unreachable ({type(exc).__name__})")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            return ProviderFailedError(
                "rate_limited", "429", retry_after=_retry_after(exc.response.headers)
            )
        if status >= 500 or status in (401, 403, 404, 408):
            return ProviderFailedError(f"http_{status}", f"answered {status}")
        try:
            body = exc.response.json()
        except ValueError:
            body = {"error": {"message": exc.response.text[:500]}}
        return CallerError(status, body)
    return exc


class Provider:
    """A configured provider: its spec, its client and its cooldown."""

    def __init__(self, spec: ProviderSpec, key: str, breaker: Cooldown) -> None:
        self.spec = spec
        self.name = spec.name
        self.breaker = breaker
        self.http = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=spec.max_connections,
                max_keepalive_connections=spec.max_connections,
            ),
            timeout=spec.timeout_seconds,
        )
        self.client = openai.AsyncOpenAI(
            base_url=spec.base_url,
            api_key=key,
            max_retries=0,
            timeout=spec.timeout_seconds,
            http_client=self.http,
        )

    def _args(self, body: dict[str, Any], upstream_model: str, identity: str | None) -> Any:
        extra = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
        headers = {IDENTITY_HEADER: identity} if identity and self.spec.forward_identity else None
        return {
            "model": upstream_model,
            "messages": body["messages"],
            "extra_body": extra or None,
            "extra_headers": headers,
        }

    async def complete(
        self, body: dict[str, Any], upstream_model: str, identity: str | None
    ) -> dict[str, Any]:
        """The provider's completion JSON, as it sent it."""
        try:
            raw = await self.client.chat.completions.with_raw_response.create(
                **self._args(body, upstream_model, identity)
            )
            data = json.loads(raw.content)
        except ValueError as exc:
            raise ProviderFailedError("bad_answer", "answer is not JSON") from exc
        except Exception as exc:
            raise classify(exc) from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise ProviderFailedError("bad_answer", "answer is not a chat completion")
        return data

    async def stream(
        self, body: dict[str, Any], upstream_model: str, identity: str | None
    ) -> AsyncIterator[bytes]:
        """The provider's SSE events (each ``data: ...\\n\\n``), ``[DONE]`` included."""
        args = self._args(body, upstream_model, identity)
        args["extra_body"] = {
            **(args["extra_body"] or {}),
            "stream_options": {"include_usage": True},
        }
        try:
            async with self.client.chat.completions.with_streaming_response.create(
                stream=True, **args
            ) as response:
                async for event in sse_events(response.iter_bytes()):
                    yield event
        except Exception as exc:
            raise classify(exc) from exc

    async def aclose(self) -> None:
        await self.http.aclose()


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Whole SSE events (``...\\n\\n``) out of arbitrarily split bytes."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n")
        while (end := buffer.find(b"\n\n")) >= 0:
            event, buffer = buffer[: end + 2], buffer[end + 2 :]
            if event.strip():
                yield event
    if buffer.strip():
        yield buffer + b"\n\n"
