"""The one Redis round trip of a request: rate-limit decision and cache lookup together.

Redis costs more CPU per request than anything else in the gateway, so the rate limits
(services.gateway.ratelimit) and the cache lookup (services.gateway.cache) run as one Lua
script: the limiter's chunk first, then, only if the request is allowed and cacheable, the
lookup's. The two chunks stay in their own modules; this one only joins them. The call goes
over the worker's pipelined connection (services.gateway.redismux) when there is one. All keys live
on one Redis (not Redis Cluster; the keys of one call would hash to different slots).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from services.common.tenancy import Identity
from services.gateway.cache import LOOKUP_LUA, CachedResponse, ResponseCache
from services.gateway.ratelimit import RATE_LIMIT_LUA, Decision, Limit, RateLimiter, limit_args
from services.gateway.redismux import RedisMux, Script

__all__ = ["Gate", "GateResult"]

# KEYS[1]: the cache generation key, KEYS[2..]: the limits' counters.
# ARGV[1]: '1' to look the cache up, ARGV[2..4]: the entry key parts, ARGV[5..]: the limits.
_GATE = (
    "local rl_key0, rl_arg0 = 1, 5\n"
    + RATE_LIMIT_LUA
    + "if rl_allowed == 0 or ARGV[1] ~= '1' then\n"
    + "  return {rl_allowed, rl_remaining, rl_reset, rl_which}\nend\n"
    + LOOKUP_LUA
    + "return {rl_allowed, rl_remaining, rl_reset, rl_which, c_gen, c_value}\n"
)


@dataclass(frozen=True, slots=True)
class GateResult:
    decision: Decision
    hit: CachedResponse | None = None
    generation: str = "0"
    cache_usable: bool = False
    """The lookup was asked for and Redis answered it (so a miss may be stored)."""


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
        limits: Sequence[Limit],
        lookup: tuple[str, str, str] | None,
    ) -> GateResult:
        """Count the request against ``limits`` and, if allowed, look the cache up.

        ``lookup`` is (resource, path, query) when the request may be served from the cache.
        When Redis fails, the limiter's fail-open/closed rule applies and the cache is skipped.
        """
        limit_keys, limit_argv = limit_args(limits)
        keys = [limit_keys[0], *limit_keys]  # KEYS[1] is unused unless there is a lookup
        args: list[Any] = ["0", "", "", "", *limit_argv]
        if lookup is not None and self.cache is not None:
            resource, path, query = lookup
            gen_key, parts = self.cache.lookup_args(
                identity, resource=resource, path=path, query=query
            )
            keys[0] = gen_key
            args[0:4] = ["1", *parts]
        try:
            raw = await self._call(keys, args)
        except (RedisError, OSError, TimeoutError) as exc:
            return GateResult(self.limiter.unavailable(limits, exc))
        decision = self.limiter.decision(limits, raw)
        if len(raw) < 5:
            return GateResult(decision)
        hit, gen = ResponseCache.parse(raw[4], raw[5] if len(raw) > 5 else None)
        return GateResult(decision, hit, gen, True)

    async def _call(self, keys: list[str], args: list[Any]) -> Any:
        mux = self._mux
        try:
            async with asyncio.timeout(self.timeout):
                if mux is not None:
                    return await mux.evalsha(self._lua, keys, args)
                return await self._script(keys=keys, args=args)
        except TimeoutError:
            if mux is not None:
                mux.reset()
            raise
