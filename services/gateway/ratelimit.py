"""Per-user rate limits in Redis: a sliding window counter from the ``limits`` library.

The default is 100 requests per minute per user and route; a route may set its own. What
happens when Redis cannot be reached is a setting: fail open (let the request through) or
fail closed (refuse it with 503); either way it is logged and counted.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from services.common.tenancy import Identity, tenant_key, user_key

__all__ = ["Decision", "RateLimiter", "RateLimiterUnavailableError"]

log = logging.getLogger("xynergy.gateway.ratelimit")


class RateLimiterUnavailableError(Exception):
    """Redis is down and the limiter is set to fail closed."""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    window_seconds: int
    degraded: bool = False

    def headers(self) -> list[tuple[str, str]]:
        out = [
            ("ratelimit-limit", str(self.limit)),
            ("ratelimit-remaining", str(self.remaining)),
            ("ratelimit-reset", str(self.reset_seconds)),
            ("ratelimit-policy", f"{self.limit};w={self.window_seconds}"),
        ]
        if not self.allowed:
            out.append(("retry-after", str(max(1, self.reset_seconds))))
        return out


class RateLimiter:
    def __init__(
        self, redis_url: str, *, window_seconds: int, fail_open: bool, on_redis_error=None
    ) -> None:
        uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
        self._storage = RedisStorage(
            uri,
            implementation="redispy",
            wrap_exceptions=True,
            key_prefix="xyn:rl",
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
        )
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._window = window_seconds
        self._fail_open = fail_open
        self._items: dict[int, RateLimitItemPerSecond] = {}
        self._on_redis_error = on_redis_error

    def _item(self, limit: int) -> RateLimitItemPerSecond:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = RateLimitItemPerSecond(limit, self._window)
        return item

    async def hit(self, identity: Identity, *, scope: str, limit: int) -> Decision:
        item = self._item(limit)
        ids = (scope, tenant_key(identity.tenant_id), user_key(identity.user_id))
        try:
            allowed = await self._limiter.hit(item, *ids)
            stats = await self._limiter.get_window_stats(item, *ids)
        except StorageError as exc:
            if self._on_redis_error is not None:
                self._on_redis_error()
            log.warning(
                "rate limiter cannot reach redis",
                extra={"fields": {"fail_open": self._fail_open, "error": type(exc).__name__}},
            )
            if not self._fail_open:
                raise RateLimiterUnavailableError from exc
            return Decision(True, limit, limit, self._window, self._window, degraded=True)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed, limit, stats.remaining, reset, self._window)

    async def ping(self) -> bool:
        try:
            return bool(await self._storage.check())
        except StorageError:
            return False
