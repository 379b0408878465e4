"""Per-user rate limits in Redis: a sliding window counter, one round trip per request.

The algorithm is the sliding window counter (as in the ``limits`` library and Cloudflare's
write-up): counts for the current and the previous fixed window, the previous one weighted by
how much of it still overlaps the sliding window. We run it as one Lua script that decides,
counts and returns what the ``RateLimit-*`` headers need, using Redis's clock so that every
gateway replica agrees. (``limits`` needs two round trips for the same answer, hit and
window stats, which cost about three times the CPU per request here.)

The default is 100 requests per minute per user and route; a route may set its own. What
happens when Redis cannot be reached is a setting: fail open (let the request through) or
fail closed (refuse it with 503); either way it is logged and counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from services.common.tenancy import Identity, tenant_key, user_key

__all__ = ["Decision", "RateLimiter", "RateLimiterUnavailableError"]

log = logging.getLogger("xynergy.gateway.ratelimit")

# A Lua chunk, shared with services.gateway.gate: KEYS[1] is the counter key prefix, ARGV[1] the
# limit, ARGV[2] the window in seconds. It leaves rl_allowed (0/1), rl_remaining and rl_reset
# (milliseconds) in locals.
RATE_LIMIT_LUA = """
local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2]) * 1000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idx = math.floor(now / window_ms)
local elapsed = now - idx * window_ms
local cur_key = KEYS[1] .. ':' .. idx
local cur = tonumber(redis.call('GET', cur_key) or '0')
local prev = tonumber(redis.call('GET', KEYS[1] .. ':' .. (idx - 1)) or '0')
local weighted = prev * (window_ms - elapsed) / window_ms + cur
local rl_allowed, rl_remaining, rl_reset
if weighted + 1 > limit then
  rl_allowed, rl_remaining = 0, 0
  if cur + 1 > limit or prev == 0 then
    rl_reset = window_ms - elapsed
  else
    rl_reset = math.ceil((1 - (limit - cur - 1) / prev) * window_ms - elapsed)
    if rl_reset < 1 then rl_reset = 1 end
  end
else
  redis.call('INCR', cur_key)
  redis.call('PEXPIRE', cur_key, window_ms * 2)
  rl_allowed, rl_remaining, rl_reset = 1, math.floor(limit - weighted - 1), window_ms - elapsed
end
"""

_SCRIPT = RATE_LIMIT_LUA + "return {rl_allowed, rl_remaining, rl_reset}\n"


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
        self, redis: Any, *, window_seconds: int, fail_open: bool, prefix: str = "xyn:rl"
    ) -> None:
        self._script = redis.register_script(_SCRIPT)
        self.window = window_seconds
        self._fail_open = fail_open
        self._prefix = prefix

    def key(self, identity: Identity, scope: str) -> str:
        return (
            f"{self._prefix}:{tenant_key(identity.tenant_id)}:{user_key(identity.user_id)}:"
            f"{self.window}:{scope}"
        )

    def decision(self, limit: int, raw: list[Any]) -> Decision:
        """The decision from the script's first three results."""
        allowed, remaining, reset_ms = raw[0], raw[1], raw[2]
        reset = -(-int(reset_ms) // 1000)  # ceil
        return Decision(bool(allowed), limit, max(0, int(remaining)), reset, self.window)

    def unavailable(self, limit: int, exc: BaseException) -> Decision:
        """Redis failed: a pass (fail open) or RateLimiterUnavailableError (fail closed)."""
        log.warning(
            "rate limiter cannot reach redis",
            extra={"fields": {"fail_open": self._fail_open, "error": type(exc).__name__}},
        )
        if not self._fail_open:
            raise RateLimiterUnavailableError from exc
        return Decision(True, limit, limit, self.window, self.window, degraded=True)

    async def hit(self, identity: Identity, *, scope: str, limit: int) -> Decision:
        try:
            raw = await self._script(keys=[self.key(identity, scope)], args=[limit, self.window])
        except (RedisError, OSError, TimeoutError) as exc:
            return self.unavailable(limit, exc)
        return self.decision(limit, raw)
