"""The one Redis round trip of a request: rate-limit decision and cache lookup together.

Redis costs more CPU per request than anything else in the gateway, so the rate limit
(services.gateway.ratelimit) and the cache lookup (services.gateway.cache) run as one Lua
script: the limiter's chunk first, then, only if the request is allowed and cacheable, the
lookup's. The two chunks stay in their own modules; this one only joins them. The call goes
over the worker's pipelined connection (services.gateway.redismux) when there is one. All keys live
on one Redis (not Redis Cluster; the keys of one call would hash to different slots).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import RedisError

from services.common.tenancy import Identity
from services.gateway.cache import LOOKUP_LUA, CachedResponse, ResponseCache
from services.gateway.ratelimit import RATE_LIMIT_LUA, Decision, RateLimiter
from services.gateway.redismux import RedisMux, Script

__all__ = ["Gate"]

_GATE = (
    RATE_LIMIT_LUA
    + "if rl_allowed == 0 or ARGV[6] ~= '1' then return {rl_allowed, rl_remaining, rl_reset} end\n"
    + LOOKUP_LUA
    + "return {rl_allowed, rl_remaining, rl_reset, c_gen, c_value}\n"
)


class Gate:
    def __init__(
        self,
        redis: Any,
        *,
        limiter: RateLimiter,
        cache: ResponseCache | None,
        timeout: float = 1.0,
        mux: RedisMux | None = None,
    ) -> None:
        self._script = redis.register_script(_GATE)
        self._lua = Script(_GATE)
        self._mux = mux
        self.timeout = timeout
        self.limiter = limiter
        self.cache = cache

    async def check(
        self,
        identity: Identity,
        *,
        scope: str,
        limit: int,
        lookup: tuple[str, str, str] | None,
    ) -> tuple[Decision, CachedResponse | None, str, bool]:
        """(decision, cache hit, cache generation, cache usable).

        ``lookup`` is (resource, path, query) when the request may be served from the cache.
        When Redis fails, the limiter's fail-open/closed rule applies and the cache is skipped.
        """
        keys = [self.limiter.key(identity, scope), ""]
        args: list[Any] = [limit, self.limiter.window, "", "", "", "0"]
        if lookup is not None and self.cache is not None:
            resource, path, query = lookup
            gen_key, parts = self.cache.lookup_args(
                identity, resource=resource, path=path, query=query
            )
            keys[1] = gen_key
            args[2:5] = parts
            args[5] = "1"
        else:
            keys[1] = keys[0]  # unused by the script, but a key name must be given
        mux = self._mux
        try:
            async with asyncio.timeout(self.timeout):
                if mux is not None:
                    raw = await mux.evalsha(self._lua, keys, args)
                else:
                    raw = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            if mux is not None and isinstance(exc, TimeoutError):
                mux.reset()
            return self.limiter.unavailable(limit, exc), None, "0", False
        decision = self.limiter.decision(limit, raw)
        if len(raw) < 4:
            return decision, None, "0", lookup is not None
        hit, gen = ResponseCache.parse(raw[3], raw[4] if len(raw) > 4 else None)
        return decision, hit, gen, True
