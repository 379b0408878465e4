"""The exact answer cache in Redis, its statistics and its invalidation.

An entry is a JSON string under :func:`services.ai.keys.cache_key` (tenant and model in the
key, so one tenant's lookups never reach another's entries) with a TTL. It holds the answer
(a completion, or the SSE events of a stream that ended with ``[DONE]``), the provider that
gave it, its usage and cost (what a hit saves) and the prompt (for invalidation by prefix).
Statistics are a Redis hash per tenant: ``hits``, ``misses``, ``bypassed``, ``saved_*``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from services.ai.keys import key_pattern
from services.common.tenancy import tenant_key

__all__ = ["AnswerCache", "CacheStats", "Entry"]

_STATS = "ai:cs"


@dataclass(frozen=True)
class Entry:
    provider: str
    prompt_tokens: int
    completion_tokens: int
    cost_picousd: int
    prompt: str
    body: dict[str, Any] | None = None
    events: list[str] | None = None


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    bypassed: int
    saved_prompt_tokens: int
    saved_completion_tokens: int
    saved_picousd: int

    @property
    def hit_ratio(self) -> float:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "bypassed": self.bypassed,
            "hit_ratio": round(self.hit_ratio, 4),
            "saved_tokens": self.saved_prompt_tokens + self.saved_completion_tokens,
            "saved_prompt_tokens": self.saved_prompt_tokens,
            "saved_completion_tokens": self.saved_completion_tokens,
            "saved_usd": self.saved_picousd / 1e12,
        }


class AnswerCache:
    def __init__(self, redis: aioredis.Redis, *, max_entry_bytes: int) -> None:
        self.redis: Any = redis  # redis-py types async calls as "Awaitable | value"
        self.max_entry_bytes = max_entry_bytes

    async def get(self, key: str) -> Entry | None:
        raw = await self.redis.get(key)
        if raw is None:
            return None
        try:
            return Entry(**json.loads(raw))
        except (ValueError, TypeError):
            return None  # an entry of another version: a miss

    def put_into(self, pipe: Any, key: str, entry: Entry, ttl: int) -> bool:
        """Queue the entry's write on a pipeline; False (nothing queued) when it is too big."""
        data = json.dumps(asdict(entry), separators=(",", ":"))
        if len(data) > self.max_entry_bytes:
            return False
        pipe.set(key, data, ex=ttl)
        return True

    async def put(self, key: str, entry: Entry, ttl: int) -> bool:
        pipe = self.redis.pipeline(transaction=False)
        stored = self.put_into(pipe, key, entry, ttl)
        if stored:
            await pipe.execute()
        return stored

    def count_into(self, pipe: Any, tenant: str, outcome: str, saved: Entry | None = None) -> None:
        """Queue the count of a lookup (``hits``, ``misses`` or ``bypassed``) and what a hit
        saved on a pipeline."""
        name = f"{_STATS}:{tenant_key(tenant)}"
        pipe.hincrby(name, outcome, 1)
        if saved is not None:
            pipe.hincrby(name, "saved_prompt_tokens", saved.prompt_tokens)
            pipe.hincrby(name, "saved_completion_tokens", saved.completion_tokens)
            pipe.hincrby(name, "saved_picousd", saved.cost_picousd)

    async def count(self, tenant: str, outcome: str, saved: Entry | None = None) -> None:
        """Count a lookup (``hits``, ``misses`` or ``bypassed``) and what a hit saved."""
        pipe = self.redis.pipeline(transaction=False)
        self.count_into(pipe, tenant, outcome, saved)
        await pipe.execute()

    async def stats(self, tenant: str) -> CacheStats:
        raw = await self.redis.hgetall(f"{_STATS}:{tenant_key(tenant)}")
        values = {k.decode(): int(v) for k, v in raw.items()}
        return CacheStats(**{f: values.get(f, 0) for f in CacheStats.__dataclass_fields__})

    async def entries(self, tenant: str, model: str | None = None) -> int:
        return sum([1 async for _ in self.redis.scan_iter(key_pattern(tenant, model), count=500)])

    async def invalidate(
        self, tenant: str, *, model: str | None = None, prefix: str | None = None
    ) -> int:
        """Delete the tenant's entries (of one model, whose prompt starts with ``prefix``)."""
        deleted = 0
        batch: list[bytes] = []
        async for key in self.redis.scan_iter(key_pattern(tenant, model), count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await self._delete(batch, prefix)
                batch = []
        if batch:
            deleted += await self._delete(batch, prefix)
        return deleted

    async def _delete(self, keys: list[bytes], prefix: str | None) -> int:
        if prefix is not None:
            values = await self.redis.mget(keys)
            keys = [k for k, v in zip(keys, values, strict=True) if v and _starts(v, prefix)]
        if not keys:
            return 0
        return int(await self.redis.unlink(*keys))


def _starts(raw: bytes, prefix: str) -> bool:
    try:
        return str(json.loads(raw).get("prompt", "")).startswith(prefix)
    except (ValueError, AttributeError):
        return False
