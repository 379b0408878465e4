"""The router: cache first, then the provider chain in order, then the ledger.

:meth:`AiRouter.complete` answers one chat completion request for one tenant:

1. the model's chain: configured providers that serve the requested model, in order;
2. the exact cache (and the semantic one when on) when the request may be cached: caching is
   on, the route's TTL is not 0, and the request is deterministic or the caller forced it;
3. the chain: a cooling provider is skipped; a timeout, unreachable provider, 429, 5xx or
   401/403/404 moves on to the next (and counts for that provider's cooldown); a 400 is the
   caller's and is returned;
4. the ledger records the provider's reported usage x price; the answer is cached. These
   writes (and the cache statistics) do not hold the answer back: they go to Redis in one
   pipeline after it (:mod:`services.ai.bookkeeping`; ``Answer.written`` is their task).

Streams follow the same path: the chain moves on until a provider sends its first event;
after that the stream is the caller's, and a provider failing mid-stream ends it with an
``error`` event (no ``[DONE]``). A stream that ended with ``[DONE]`` is cached as its events.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from services.ai.bookkeeping import Bookkeeping
from services.ai.cache import AnswerCache, Entry
from services.ai.keys import cache_key, deterministic, last_user_text
from services.ai.ledger import Ledger
from services.ai.providers import CallerError, Provider, ProviderFailedError, Usage, cost_picousd
from services.ai.semantic import SemanticCache
from services.ai.settings import AiSettings
from services.common.identity import InternalIdentitySigner
from services.common.tenancy import Identity

__all__ = [
    "AiRouter",
    "Answer",
    "Attempt",
    "ChainExhaustedError",
    "NoProviderError",
    "RouteRequest",
]

log = logging.getLogger("xynergy.ai")
_DONE = b"data: [DONE]\n\n"
CACHE_MODES = ("auto", "force", "off", "refresh")


@dataclass(frozen=True)
class Attempt:
    provider: str
    outcome: str


@dataclass(frozen=True)
class RouteRequest:
    identity: Identity
    body: dict[str, Any]
    route: str | None = None
    cache_mode: str = "auto"

    @property
    def tenant(self) -> str:
        return self.identity.tenant_id

    @property
    def model(self) -> str:
        return str(self.body["model"])


@dataclass
class Answer:
    """A completion (``body``) or a stream (``events``), and how it was obtained."""

    provider: str
    cache: str
    """``hit``, ``semantic_hit``, ``miss`` (looked up, then asked) or ``bypass``."""
    attempts: list[Attempt] = field(default_factory=list)
    body: dict[str, Any] | None = None
    events: AsyncIterator[bytes] | None = None
    written: asyncio.Task[None] | None = None
    """The writes after the answer (ledger, cache entry, statistics): done when they are."""


class NoProviderError(Exception):
    def __init__(self, model: str, served: list[str]) -> None:
        super().__init__(f"no configured provider serves model {model!r}")
        self.model = model
        self.served = served


class ChainExhaustedError(Exception):
    def __init__(self, attempts: list[Attempt], retry_after: float) -> None:
        summary = ", ".join(f"{a.provider}: {a.outcome}" for a in attempts)
        super().__init__(f"every provider failed ({summary})")
        self.attempts = attempts
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Lookup:
    key: str | None
    ttl: int


class AiRouter:
    def __init__(
        self,
        providers: list[Provider],
        *,
        settings: AiSettings,
        cache: AnswerCache,
        ledger: Ledger,
        signer: InternalIdentitySigner | None = None,
        semantic: SemanticCache | None = None,
    ) -> None:
        self.providers = providers
        self.settings = settings
        self.cache = cache
        self.ledger = ledger
        self.signer = signer
        self.semantic = semantic
        self.bookkeeping = Bookkeeping()

    def chain(self, model: str) -> list[tuple[Provider, str]]:
        out = []
        for provider in self.providers:
            upstream = provider.spec.upstream_model(model)
            if upstream is not None:
                out.append((provider, upstream))
        if not out:
            served = sorted({m for p in self.providers for m in p.spec.models if m != "*"})
            raise NoProviderError(model, served)
        return out

    def ttl(self, route: str | None) -> int:
        best = ""
        for prefix in self.settings.cache_route_ttls:
            if route is not None and route.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self.settings.cache_route_ttls[best] if best else self.settings.cache_ttl_seconds

    # -- the whole request ----------------------------------------------------------------

    async def complete(self, req: RouteRequest) -> Answer:
        chain = self.chain(req.model)
        lookup = self._lookup(req)
        if lookup.key is not None:
            hit = await self._cached(req, lookup.key)
            if hit is not None:
                return hit
        outcome = "misses" if lookup.key is not None else "bypassed"
        if req.body.get("stream"):
            await self.cache.count(req.tenant, outcome)
            return await self._stream(req, chain, lookup)
        try:
            data, provider, upstream, attempts = await self._call(req, chain)
        except Exception:
            await self.cache.count(req.tenant, outcome)
            raise
        usage = Usage.of(data)
        written = self._book(req, provider, upstream, usage, lookup, outcome=outcome, body=data)
        cache = "miss" if lookup.key is not None else "bypass"
        return Answer(provider.name, cache, attempts, body=data, written=written)

    def _lookup(self, req: RouteRequest) -> _Lookup:
        ttl = self.ttl(req.route)
        mode = req.cache_mode
        may = mode != "off" and self.settings.cache_enabled and ttl > 0
        if not may or not (mode == "force" or deterministic(req.body)):
            return _Lookup(None, ttl)
        return _Lookup(cache_key(req.tenant, req.model, req.body), ttl)

    async def _cached(self, req: RouteRequest, key: str) -> Answer | None:
        """The cached answer, or None (the caller counts the miss)."""
        if req.cache_mode == "refresh":
            return None
        entry = await self.cache.get(key)
        how = "hit"
        if entry is None and self.semantic is not None and not req.body.get("stream"):
            entry = await self.semantic.lookup(req, self.cache)
            how = "semantic_hit"
        if entry is None or (entry.events is None) == bool(req.body.get("stream")):
            return None
        written = self.bookkeeping.later(
            functools.partial(self.cache.count, req.tenant, "hits", saved=entry),
            what={"tenant": req.tenant, "counted": "hits"},
        )
        events = _replay([e.encode() for e in entry.events]) if entry.events else None
        return Answer(entry.provider, how, body=entry.body, events=events, written=written)

    def _book(
        self,
        req: RouteRequest,
        provider: Provider,
        upstream: str,
        usage: Usage,
        lookup: _Lookup,
        *,
        outcome: str | None,
        body: dict[str, Any] | None = None,
        events: list[str] | None = None,
    ) -> asyncio.Task[None]:
        """After the answer, in one pipeline: the lookup's count (``outcome``, unless already
        counted), the ledger, and the answer into the cache when it may be cached."""
        cost = cost_picousd(provider.spec, upstream, usage)
        entry = Entry(
            provider=provider.name,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_picousd=cost,
            prompt=last_user_text(req.body),
            body=body,
            events=events,
        )

        async def write() -> None:
            pipe = self.cache.redis.pipeline(transaction=True)
            if outcome is not None:
                self.cache.count_into(pipe, req.tenant, outcome)
            self.ledger.record_into(
                pipe,
                req.tenant,
                provider=provider.name,
                model=upstream,
                usage=usage,
                cost_picousd=cost,
            )
            key = lookup.key if body is not None or events is not None else None
            stored = key is not None and self.cache.put_into(pipe, key, entry, lookup.ttl)
            await pipe.execute()
            if stored and key is not None and body is not None:
                await self._semantic_add(req, key)

        what: dict[str, Any] = {"tenant": req.tenant, "provider": provider.name, "model": upstream}
        what.update(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
        return self.bookkeeping.later(write, what={**what, "cost_picousd": cost})

    async def _semantic_add(self, req: RouteRequest, key: str) -> None:
        if self.semantic is None:
            return
        try:
            await self.semantic.add(req, key)
        except Exception as exc:  # the answer and the exact entry are good; this is a hint
            log.warning(
                "semantic index write failed", extra={"fields": {"error": type(exc).__name__}}
            )

    async def aclose(self) -> None:
        """Wait for the writes of every answer given so far."""
        await self.bookkeeping.drain()

    # -- the chain ------------------------------------------------------------------------

    def _identity(self, provider: Provider, req: RouteRequest) -> str | None:
        if not provider.spec.forward_identity or self.signer is None:
            return None
        return self.signer.sign(req.identity)

    async def _call(
        self, req: RouteRequest, chain: list[tuple[Provider, str]]
    ) -> tuple[dict[str, Any], Provider, str, list[Attempt]]:
        attempts: list[Attempt] = []
        for provider, upstream in chain:
            if not provider.breaker.admit():
                attempts.append(Attempt(provider.name, "cooling"))
                continue
            try:
                data = await provider.complete(req.body, upstream, self._identity(provider, req))
            except ProviderFailedError as failure:
                self._failed(provider, failure, attempts)
                continue
            except CallerError:
                provider.breaker.succeeded()  # it answered: the request was the problem
                raise
            except BaseException:
                provider.breaker.released()
                raise
            provider.breaker.succeeded()
            attempts.append(Attempt(provider.name, "ok"))
            return data, provider, upstream, attempts
        raise self._exhausted(chain, attempts)

    def _failed(
        self, provider: Provider, failure: ProviderFailedError, attempts: list[Attempt]
    ) -> None:
        provider.breaker.failed(
            rate_limited=failure.kind == "rate_limited", retry_after=failure.retry_after
        )
        attempts.append(Attempt(provider.name, failure.kind))
        log.warning(
            "provider failed",
            extra={"fields": {"provider": provider.name, "outcome": failure.kind}},
        )

    @staticmethod
    def _exhausted(chain: list[tuple[Provider, str]], attempts: list[Attempt]) -> Exception:
        waits = [p.breaker.retry_in() for p, _ in chain]
        return ChainExhaustedError(attempts, retry_after=max(1.0, min(waits)))

    # -- streams --------------------------------------------------------------------------

    async def _stream(
        self, req: RouteRequest, chain: list[tuple[Provider, str]], lookup: _Lookup
    ) -> Answer:
        attempts: list[Attempt] = []
        for provider, upstream in chain:
            if not provider.breaker.admit():
                attempts.append(Attempt(provider.name, "cooling"))
                continue
            events = provider.stream(req.body, upstream, self._identity(provider, req))
            try:
                first = await anext(events)
            except ProviderFailedError as failure:
                self._failed(provider, failure, attempts)
                continue
            except CallerError:
                provider.breaker.succeeded()
                raise
            except BaseException:
                provider.breaker.released()
                raise
            attempts.append(Attempt(provider.name, "ok"))
            relay = self._relay(req, provider, upstream, lookup, first, events)
            cache = "miss" if lookup.key is not None else "bypass"
            return Answer(provider=provider.name, cache=cache, attempts=attempts, events=relay)
        raise self._exhausted(chain, attempts)

    async def _relay(
        self,
        req: RouteRequest,
        provider: Provider,
        upstream: str,
        lookup: _Lookup,
        first: bytes,
        rest: AsyncIterator[bytes],
    ) -> AsyncIterator[bytes]:
        """The provider's events to the caller; usage into the ledger; the whole stream into
        the cache when it ended with [DONE]."""
        wants_usage = bool((req.body.get("stream_options") or {}).get("include_usage"))
        seen: list[bytes] = []
        usage = Usage()
        event: bytes | None = first
        try:
            while event is not None:
                found = _usage_of(event)
                if found is not None:
                    usage = found
                if found is None or wants_usage:
                    seen.append(event)
                    yield event
                event = await anext(rest, None)
        except ProviderFailedError as failure:
            provider.breaker.failed()
            log.warning("stream cut", extra={"fields": {"provider": provider.name}})
            yield _error_event(f"provider {provider.name} failed mid-stream ({failure.kind})")
            return
        finally:
            await _close(rest)
            if usage.prompt_tokens or usage.completion_tokens:
                done = bool(seen) and seen[-1] == _DONE
                events = [e.decode() for e in seen] if done else None
                self._book(req, provider, upstream, usage, lookup, outcome=None, events=events)
        provider.breaker.succeeded()


def _usage_of(event: bytes) -> Usage | None:
    """The usage of a usage-only chunk (``choices: []``), else None."""
    if b'"usage"' not in event or not event.startswith(b"data: {"):
        return None
    try:
        data = json.loads(event[6:])
    except ValueError:
        return None
    if data.get("usage") and not data.get("choices"):
        return Usage.of(data)
    return None


def _error_event(message: str) -> bytes:
    body = {"error": {"message": message, "type": "upstream_error", "code": "stream_cut"}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def _replay(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event


async def _close(events: AsyncIterator[bytes]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
