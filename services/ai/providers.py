"""One OpenAI-compatible provider of the chain, called over HTTP with aiohttp.

Each provider has its own pooled ``aiohttp.ClientSession`` (HTTP/1.1 keep-alive, at most
``max_connections``), made on first use because a session belongs to the loop that serves.
The request is OpenAI's chat completion body with the provider's model name; answers are read
raw, so the caller gets the provider's JSON or SSE bytes unchanged and nothing is rebuilt from
typed objects. (The official ``openai`` client did the same through ``with_raw_response`` at
about three times the CPU per call: bench/ai_router.py; tests/integration/ai_router checks
that the fake provider speaks what that client reads.) No retries here: the router decides
what happens after a failure. Failures are sorted:

- :class:`ProviderFailedError` (the chain moves on): timeout, unreachable, 429, 5xx, and 401/403/
  404/408 (our key or our model mapping is wrong, not the caller's request);
- :class:`CallerError` (returned to the caller, no fallback): any other 4xx, e.g. 400.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import aiohttp

from services.ai.breaker import Cooldown
from services.ai.settings import ProviderSpec
from services.common.identity import IDENTITY_HEADER

__all__ = ["CallerError", "Provider", "ProviderFailedError", "Usage", "cost_picousd", "sse_events"]

_PICO = Decimal(1_000_000)  # USD per 1M tokens x tokens x 1e6 = pico-USD
_MOVE_ON = (401, 403, 404, 408)  # our key or mapping is wrong, or the provider gave up


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


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return float(headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def refusal(status: int, headers: Mapping[str, str], raw: bytes) -> Exception:
    """The error of a provider's answer with an error status (>= 400)."""
    if status == 429:
        return ProviderFailedError("rate_limited", "429", retry_after=_retry_after(headers))
    if status >= 500 or status in _MOVE_ON:
        return ProviderFailedError(f"http_{status}", f"answered {status}")
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"error": {"message": raw[:500].decode(errors="replace")}}
    return CallerError(status, body)


def classify(exc: Exception) -> Exception:
    """A transport exception as a failure the chain moves on from (others unchanged)."""
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return ProviderFailedError("timeout", "timed out")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ProviderFailedError("unreachable", f"unreachable ({type(exc).__name__})")
    return exc


class Provider:
    """A configured provider: its spec, its HTTP session and its cooldown."""

    def __init__(self, spec: ProviderSpec, key: str, breaker: Cooldown) -> None:
        self.spec = spec
        self.name = spec.name
        self.breaker = breaker
        self.url = spec.base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        seconds = spec.timeout_seconds  # per step, as httpx's timeout: a stream may run longer
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=seconds, sock_connect=seconds, sock_read=seconds
        )
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.spec.max_connections),
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=True,  # HTTPS_PROXY and NO_PROXY, read as httpx read them
            )
        return self._session

    def _request(
        self, body: dict[str, Any], upstream_model: str, identity: str | None, *, stream: bool
    ) -> dict[str, Any]:
        payload = {k: v for k, v in body.items() if k != "stream"}
        payload["model"] = upstream_model
        if stream:
            options = body.get("stream_options") or {}
            payload.update(stream=True, stream_options={**options, "include_usage": True})
        headers = self._headers
        if identity and self.spec.forward_identity:
            headers = {**headers, IDENTITY_HEADER: identity}
        body_bytes = json.dumps(payload).encode()
        return {"data": body_bytes, "headers": headers, "allow_redirects": False}

    async def complete(
        self, body: dict[str, Any], upstream_model: str, identity: str | None
    ) -> dict[str, Any]:
        """The provider's completion JSON, as it sent it."""
        request = self._request(body, upstream_model, identity, stream=False)
        try:
            async with self._http().post(self.url, **request) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise refusal(response.status, response.headers, raw)
        except (ProviderFailedError, CallerError):
            raise
        except Exception as exc:
            raise classify(exc) from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ProviderFailedError("bad_answer", "answer is not JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise ProviderFailedError("bad_answer", "answer is not a chat completion")
        return data

    async def stream(
        self, body: dict[str, Any], upstream_model: str, identity: str | None
    ) -> AsyncIterator[bytes]:
        """The provider's SSE events (each ``data: ...\\n\\n``), ``[DONE]`` included."""
        request = self._request(body, upstream_model, identity, stream=True)
        try:
            async with self._http().post(self.url, **request) as response:
                if response.status >= 400:
                    raise refusal(response.status, response.headers, await response.read())
                async for event in sse_events(response.content.iter_any()):
                    yield event
        except (ProviderFailedError, CallerError):
            raise
        except Exception as exc:
            raise classify(exc) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


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
