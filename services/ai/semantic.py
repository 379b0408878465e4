"""The optional semantic cache: a near-identical prompt gets a cached answer.

Off by default (``XYNERGY_AI_SEMANTIC_CACHE_ENABLED``). Runs only after an exact miss, on
requests that may be cached. The messages' text is embedded by the internal AI service
(``/v1/embeddings``, all-MiniLM-L6-v2); vectors live in one Redis hash per tenant, model and
the digest of every other parameter (a different temperature or max_tokens never matches),
mapping an exact-cache key to its float32 vector. The best cosine similarity at or above
``semantic_threshold`` answers with that key's entry. The index is bounded
(``semantic_max_entries``); an entry whose exact key expired is dropped from it when met.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import redis.asyncio as aioredis

from services.ai.keys import normalise
from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.tenancy import tenant_key, user_key

if TYPE_CHECKING:
    from services.ai.cache import AnswerCache, Entry
    from services.ai.engine import RouteRequest

__all__ = ["SemanticCache"]

log = logging.getLogger("xynergy.ai.semantic")


def _split(body: dict[str, Any]) -> tuple[str, str]:
    """(the messages' text, a digest of everything else that shapes the answer)."""
    text = "\n".join(
        f"{m.get('role')}: {str(m.get('content') or '').strip()}" for m in body["messages"]
    )
    rest = {k: v for k, v in body.items() if k != "messages"}
    return text, hashlib.sha256(normalise(rest).encode()).hexdigest()[:16]


class SemanticCache:
    def __init__(
        self,
        redis: aioredis.Redis,
        http: httpx.AsyncClient,
        *,
        embeddings_url: str,
        threshold: float,
        max_entries: int,
        signer: InternalIdentitySigner | None,
    ) -> None:
        self.redis: Any = redis  # redis-py types async calls as "Awaitable | value"
        self.http = http
        self.url = embeddings_url.rstrip("/") + "/embeddings"
        self.threshold = threshold
        self.max_entries = max_entries
        self.signer = signer
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()

    def _index(self, req: RouteRequest, digest: str) -> str:
        return f"ai:sem:{tenant_key(req.tenant)}:{user_key(req.model)}:{digest}"

    async def _embed(self, req: RouteRequest, text: str) -> np.ndarray | None:
        memo = hashlib.sha256(text.encode()).hexdigest()
        if memo in self._vectors:
            self._vectors.move_to_end(memo)
            return self._vectors[memo]
        headers = {IDENTITY_HEADER: self.signer.sign(req.identity)} if self.signer else {}
        try:
            r = await self.http.post(self.url, json={"input": text}, headers=headers)
            r.raise_for_status()
            vector = np.asarray(r.json()["data"][0]["embedding"], dtype=np.float32)
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            log.warning("embedding failed", extra={"fields": {"error": type(exc).__name__}})
            return None
        vector /= max(float(np.linalg.norm(vector)), 1e-12)
        self._vectors[memo] = vector
        if len(self._vectors) > 256:
            self._vectors.popitem(last=False)
        return vector

    async def lookup(self, req: RouteRequest, cache: AnswerCache) -> Entry | None:
        text, digest = _split(req.body)
        vector = await self._embed(req, text)
        if vector is None:
            return None
        index = self._index(req, digest)
        stored = await self.redis.hgetall(index)
        if not stored:
            return None
        keys = list(stored)
        matrix = np.stack([np.frombuffer(stored[k], dtype=np.float32) for k in keys])
        scores = matrix @ vector
        best = int(np.argmax(scores))
        if float(scores[best]) < self.threshold:
            return None
        entry = await cache.get(keys[best].decode())
        if entry is None:
            await self.redis.hdel(index, keys[best])
        return entry

    async def add(self, req: RouteRequest, key: str) -> None:
        text, digest = _split(req.body)
        vector = await self._embed(req, text)
        if vector is None:
            return
        index = self._index(req, digest)
        await self.redis.hset(index, key, vector.astype(np.float32).tobytes())
        if await self.redis.hlen(index) > self.max_entries:
            async for field, _ in self.redis.hscan_iter(index, count=10):
                if field.decode() != key:
                    await self.redis.hdel(index, field)
                    break
