"""The response cache in Redis, per tenant and user scope.

Only GET responses that the upstream marks cacheable are stored (``Cache-Control`` with
``max-age``/``s-maxage`` > 0, no ``no-store``/``no-cache``/``Set-Cookie``/``Vary``/
``Content-Encoding``); the TTL is the upstream's, capped by a setting. Responses are private
to the user unless the upstream says ``public``, then shared within the tenant, never across
tenants: the tenant id is part of every key.

Invalidation is by generation: each (tenant, resource) has a counter that is part of every
entry's key; a successful write under the resource bumps it, so every older entry for that
tenant and resource becomes unreachable at once and expires on its own. A lookup reads the
counter and the entry in the same round trip as the rate limit (see services.gateway.gate).

A write bumps the generation twice: before it is forwarded (so no entry stored before the
write survives it) and after it succeeded (so no entry stored by a GET racing the write
does). A bump that Redis does not confirm in time is not forgotten (:class:`Invalidations`):
the (tenant, resource) is marked pending, this worker neither reads nor stores cache entries
for it, and a background task retries the bump until Redis confirms it. Only then is the
resource cached again, so a stalled Redis that later runs the lookups and the bumps in any
order cannot hand out an entry from before the write.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from redis.exceptions import RedisError

from services.common.tenancy import Identity, tenant_key, user_key
from services.gateway.redishealth import RedisHealth

__all__ = [
    "LOOKUP_LUA",
    "CachedResponse",
    "Invalidations",
    "ResponseCache",
    "cache_ttl",
    "joined_headers",
    "normalise_query",
]

log = logging.getLogger("xynergy.gateway.cache")

_MAX_AGE_RE = re.compile(r"(?:^|[,\s])(s-maxage|max-age)\s*=\s*\"?(\d+)")

# A Lua chunk, shared with services.gateway.gate. KEYS[1] is the generation key, ARGV[2] the
# entry key head, ARGV[3]/ARGV[4] the user- and tenant-scope tails. It leaves c_gen and c_value.
LOOKUP_LUA = """
local c_gen = redis.call('GET', KEYS[1]) or '0'
local c_value = redis.call('GET', ARGV[2] .. c_gen .. ARGV[3])
if not c_value then c_value = redis.call('GET', ARGV[2] .. c_gen .. ARGV[4]) end
"""


def normalise_query(query: str) -> str:
    """The query with parameters sorted, so ``?b=2&a=1`` and ``?a=1&b=2`` share an entry."""
    if not query:
        return ""
    return urlencode(sorted(parse_qsl(query, keep_blank_values=True)))


def joined_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header names lower-cased, a repeated header's values joined with ", " (RFC 9110 5.3):
    ``Cache-Control: no-store`` then ``Cache-Control: max-age=60`` is ``no-store, max-age=60``,
    never just the last one."""
    out: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def cache_ttl(headers: dict[str, str], *, max_ttl: int) -> tuple[int, bool]:
    """(ttl seconds, public) from response headers (names lower-cased, repeated ones joined:
    :func:`joined_headers`); ttl 0 means not cacheable. ``no-store`` or ``no-cache`` anywhere
    wins, and of two ages for one directive the shorter."""
    if "set-cookie" in headers or "vary" in headers or "content-encoding" in headers:
        return 0, False
    cc = headers.get("cache-control", "").lower()
    if not cc or "no-store" in cc or "no-cache" in cc:
        return 0, False
    ages: dict[str, int] = {}
    for k, v in _MAX_AGE_RE.findall(cc):
        ages[k] = min(int(v), ages.get(k, int(v)))
    ttl = ages.get("s-maxage", ages.get("max-age", 0))
    return min(ttl, max_ttl), ("public" in cc and "private" not in cc)


@dataclass(frozen=True, slots=True)
class CachedResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    age: int


class ResponseCache:
    """Redis-backed cache; callers catch Redis errors and treat them as misses."""

    def __init__(self, redis: Any, *, max_ttl: int, prefix: str = "xyn") -> None:
        self._redis = redis
        self._max_ttl = max_ttl
        self._prefix = prefix

    def _gen_key(self, tenant: str, resource: str) -> str:
        return f"{self._prefix}:cg:{tenant_key(tenant)}:{resource}"

    def _entry_parts(self, identity: Identity, *, path: str, query: str) -> tuple[str, str, str]:
        """(head, user-scope tail, tenant-scope tail); the key is head + generation + tail."""
        digest = hashlib.sha256(f"{path}?{normalise_query(query)}".encode()).hexdigest()[:40]
        head = f"{self._prefix}:c:{tenant_key(identity.tenant_id)}:"
        return head, f":u:{user_key(identity.user_id)}:GET:{digest}", f":t:GET:{digest}"

    def lookup_args(
        self, identity: Identity, *, resource: str, path: str, query: str
    ) -> tuple[str, list[str]]:
        """(generation key, [head, user tail, tenant tail]) for LOOKUP_LUA."""
        head, user_tail, tenant_tail = self._entry_parts(identity, path=path, query=query)
        return self._gen_key(identity.tenant_id, resource), [head, user_tail, tenant_tail]

    @staticmethod
    def parse(gen: Any, raw: bytes | None) -> tuple[CachedResponse | None, str]:
        """(hit or None, generation) from what LOOKUP_LUA left."""
        gen_s = gen.decode() if isinstance(gen, bytes) else str(gen)
        return (_decode(raw) if raw is not None else None), gen_s

    async def put(
        self,
        identity: Identity,
        *,
        gen: str,
        path: str,
        query: str,
        response: CachedResponse,
        ttl: int,
        public: bool,
    ) -> None:
        head, user_tail, tenant_tail = self._entry_parts(identity, path=path, query=query)
        tail = tenant_tail if public else user_tail
        await self._redis.set(head + gen + tail, _encode(response), ex=min(ttl, self._max_ttl))

    async def invalidate(self, tenant: str, resource: str) -> None:
        key = self._gen_key(tenant, resource)
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, self._max_ttl * 2)
        await pipe.execute()


class Invalidations:
    """Generation bumps, remembered and retried until Redis confirms them.

    While a (tenant, resource) is pending, :meth:`blocked` is true and the proxy bypasses the
    cache for it. ``on_error`` is called for every failed attempt (metrics).
    """

    def __init__(
        self,
        cache: ResponseCache,
        *,
        timeout: float = 1.0,
        max_backoff: float = 5.0,
        on_error: Any = None,
        health: RedisHealth | None = None,
    ) -> None:
        self._cache = cache
        self._health = health
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._on_error = on_error
        self._pending: dict[tuple[str, str], None] = {}
        self._wake = asyncio.Event()

    def blocked(self, tenant: str, resource: str) -> bool:
        return bool(self._pending) and (tenant, resource) in self._pending

    def pending(self) -> int:
        return len(self._pending)

    async def bump(self, tenant: str, resource: str) -> bool:
        """Bump now; True when Redis confirmed it, else it stays pending and is retried.

        A resource already pending is not bumped here: its retry comes after this call.
        """
        if self.blocked(tenant, resource):
            return False
        error = await self._try(tenant, resource)
        if error is None:
            return True
        if self._health is not None:
            self._health.failed("cache", error, mode="bypass")
        self._pending[(tenant, resource)] = None
        self._wake.set()
        return False

    async def _try(self, tenant: str, resource: str) -> BaseException | None:
        """Bump once; the error when Redis did not confirm it, else None."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._cache.invalidate(tenant, resource)
        except (RedisError, OSError, TimeoutError) as exc:
            if self._on_error is not None:
                self._on_error()
            if self._health is None:  # else the outage is logged once, by the tracker
                log.warning(
                    "cache invalidation not confirmed; bypassing the resource until it is",
                    extra={"fields": {"resource": resource, "error": type(exc).__name__}},
                )
            return exc
        if self._health is not None:
            self._health.answered()
        return None

    async def run(self) -> None:
        """Retry pending bumps until cancelled, with capped, jittered backoff."""
        failures = 0
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            tenant, resource = next(iter(self._pending))
            if await self._try(tenant, resource) is None:
                self._pending.pop((tenant, resource), None)
                failures = 0
                continue
            failures += 1
            delay = min(self._max_backoff, 0.1 * 2**failures)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))


def _encode(response: CachedResponse) -> bytes:
    head = json.dumps({"s": response.status, "h": response.headers, "t": int(time.time())})
    return head.encode() + b"\n" + response.body


def _decode(raw: bytes) -> CachedResponse:
    head, _, body = raw.partition(b"\n")
    meta = json.loads(head)
    return CachedResponse(
        status=int(meta["s"]),
        headers=[(k, v) for k, v in meta["h"]],
        body=body,
        age=max(0, int(time.time()) - int(meta["t"])),
    )
