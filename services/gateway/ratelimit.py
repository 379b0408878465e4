"""Rate limits in Redis: sliding window counters, several limits checked in one round trip.

The algorithm is the sliding window counter (as in the ``limits`` library and Cloudflare's
write-up): counts for the current and the previous fixed window, the previous one weighted by
how much of it still overlaps the sliding window. We run it as one Lua script that checks
every limit that applies to a request, counts the request against all of them only when all
allow it, and returns what the ``RateLimit-*`` headers need (for the limit closest to refusing,
or the one that refused), using Redis's clock so that every gateway replica agrees.

Limits (see :class:`Policies`): per user and route (100 per minute unless the route says
otherwise), per tenant, per client address for all traffic, and per client address for
unauthenticated requests (a missing or bad token; 100 per 15 minutes, as in the seed). What
happens when Redis cannot be reached is a setting: fail open (let the request through, with no
``RateLimit-*`` headers, since nothing was checked) or fail closed (refuse it with 503);
either way it is logged once per outage and counted per request
(services.gateway.redishealth).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from services.common.tenancy import Identity, tenant_key, user_key
from services.gateway.redishealth import RedisHealth

__all__ = [
    "Decision",
    "Limit",
    "Policies",
    "RateLimiter",
    "RateLimiterUnavailableError",
    "limit_args",
]

log = logging.getLogger("xynergy.gateway.ratelimit")

# A Lua chunk, shared with services.gateway.gate. The wrapping script sets rl_key0 and rl_arg0:
# ARGV[rl_arg0] is the number of limits n; for limit i, KEYS[rl_key0 + i] is its counter key
# prefix and ARGV[rl_arg0 + 2i - 1], ARGV[rl_arg0 + 2i] its limit and window in seconds. The
# request is counted against every limit only when all allow it. It leaves rl_allowed (0/1),
# rl_remaining, rl_reset (milliseconds) and rl_which (the limit they describe) in locals.
RATE_LIMIT_LUA = """
local rl_n = tonumber(ARGV[rl_arg0])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rl_allowed, rl_remaining, rl_reset, rl_which = 1, -1, 0, 1
local rl_incr = {}
for i = 1, rl_n do
  local limit = tonumber(ARGV[rl_arg0 + 2 * i - 1])
  local window_ms = tonumber(ARGV[rl_arg0 + 2 * i]) * 1000
  local idx = math.floor(now / window_ms)
  local elapsed = now - idx * window_ms
  local cur_key = KEYS[rl_key0 + i] .. ':' .. idx
  local cur = tonumber(redis.call('GET', cur_key) or '0')
  local prev = tonumber(redis.call('GET', KEYS[rl_key0 + i] .. ':' .. (idx - 1)) or '0')
  local weighted = prev * (window_ms - elapsed) / window_ms + cur
  if weighted + 1 > limit then
    local reset = window_ms - elapsed
    if cur + 1 <= limit and prev > 0 then
      reset = math.ceil((1 - (limit - cur - 1) / prev) * window_ms - elapsed)
      if reset < 1 then reset = 1 end
    end
    if rl_allowed == 1 or reset > rl_reset then rl_reset, rl_which = reset, i end
    rl_allowed, rl_remaining = 0, 0
  elseif rl_allowed == 1 then
    local remaining = math.floor(limit - weighted - 1)
    if rl_remaining < 0 or remaining < rl_remaining then
      rl_remaining, rl_reset, rl_which = remaining, window_ms - elapsed, i
    end
    rl_incr[#rl_incr + 1] = {cur_key, window_ms * 2}
  end
end
if rl_allowed == 1 then
  for _, k in ipairs(rl_incr) do
    redis.call('INCR', k[1])
    redis.call('PEXPIRE', k[1], k[2])
  end
end
"""

_SCRIPT = (
    "local rl_key0, rl_arg0 = 0, 1\n"
    + RATE_LIMIT_LUA
    + "return {rl_allowed, rl_remaining, rl_reset, rl_which, now}\n"
)

# Takes back one count from each counter KEYS[i] (a limit's key and the window it was counted
# in), never below zero: a window that has expired meanwhile is not made negative.
_GIVE_BACK = """
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
return 1
"""


class RateLimiterUnavailableError(Exception):
    """Redis is down and the limiter is set to fail closed."""


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit that applies to a request: ``limit`` requests per ``window`` seconds."""

    name: str  # user, tenant, ip, unauthenticated, public, stream_ip, stream_user
    key: str
    limit: int
    window: int


def limit_args(limits: Sequence[Limit]) -> tuple[list[str], list[Any]]:
    """(keys, args) for RATE_LIMIT_LUA: the counter keys, then n and (limit, window) pairs."""
    args: list[Any] = [len(limits)]
    for lim in limits:
        args += [lim.limit, lim.window]
    return [lim.key for lim in limits], args


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    window_seconds: int
    degraded: bool = False
    """Redis was not reached and the request was let through unchecked (fail open)."""
    name: str = "user"
    counted_at_ms: int | None = None
    """Redis's clock when :meth:`RateLimiter.hit` counted the request (its windows); None when
    nothing was counted (refused, fail open) or the count came from another script."""

    def headers(self) -> list[tuple[str, str]]:
        """``RateLimit-*`` (and ``Retry-After`` on a refusal); none when nothing was checked."""
        if self.degraded:
            return []
        out = [
            ("ratelimit-limit", str(self.limit)),
            ("ratelimit-remaining", str(self.remaining)),
            ("ratelimit-reset", str(self.reset_seconds)),
            ("ratelimit-policy", f"{self.limit};w={self.window_seconds}"),
        ]
        if not self.allowed:
            out.append(("retry-after", str(max(1, self.reset_seconds))))
        return out


@dataclass(frozen=True, slots=True)
class Policies:
    """The limits of the gateway; a limit of 0 turns that kind off."""

    window: int
    per_user: int
    per_tenant: int = 0
    per_ip: int = 0
    unauthenticated: int = 0
    unauthenticated_window: int = 900
    stream_per_ip: int = 0
    stream_per_user: int = 0
    prefix: str = "xyn:rl"

    def _ip(self, client_ip: str) -> str:
        return user_key(client_ip)  # IPv6 addresses have ':' in them: hashed

    def authenticated(
        self, identity: Identity, *, client_ip: str, scope: str, per_user: int | None = None
    ) -> list[Limit]:
        """The limits of a request with a verified identity, to ``scope`` (a route prefix)."""
        p, w = self.prefix, self.window
        tenant = tenant_key(identity.tenant_id)
        limits = [
            Limit(
                "user",
                f"{p}:{tenant}:{user_key(identity.user_id)}:{w}:{scope}",
                per_user or self.per_user,
                w,
            )
        ]
        if self.per_tenant:
            limits.append(Limit("tenant", f"{p}:tenant:{tenant}:{w}", self.per_tenant, w))
        if self.per_ip:
            limits.append(Limit("ip", f"{p}:ip:{self._ip(client_ip)}:{w}", self.per_ip, w))
        return limits

    def public(self, *, client_ip: str, scope: str, per_address: int | None = None) -> list[Limit]:
        """The limits of a request to a public route (no token asked): per client address
        and route, at the route's rate or the per-user default, plus the address cap."""
        p, w = self.prefix, self.window
        ip = self._ip(client_ip)
        limits = [Limit("public", f"{p}:pub:{ip}:{w}:{scope}", per_address or self.per_user, w)]
        if self.per_ip:
            limits.append(Limit("ip", f"{p}:ip:{ip}:{w}", self.per_ip, w))
        return limits

    def stream_connect(self, *, client_ip: str) -> list[Limit]:
        """The limit of a socket.io connection from an address, before its token is read."""
        if not self.stream_per_ip:
            return []
        p, w = self.prefix, self.window
        return [Limit("stream_ip", f"{p}:sio:ip:{self._ip(client_ip)}:{w}", self.stream_per_ip, w)]

    def stream_user(self, identity: Identity) -> list[Limit]:
        """The limit of a socket.io connection of a verified user."""
        if not self.stream_per_user:
            return []
        p, w = self.prefix, self.window
        key = f"{p}:sio:{tenant_key(identity.tenant_id)}:{user_key(identity.user_id)}:{w}"
        return [Limit("stream_user", key, self.stream_per_user, w)]

    def unauthenticated_limits(self, *, client_ip: str) -> list[Limit]:
        """The limits of a request whose token was missing or refused."""
        limits = []
        if self.unauthenticated:
            w = self.unauthenticated_window
            key = f"{self.prefix}:anon:{self._ip(client_ip)}:{w}"
            limits.append(Limit("unauthenticated", key, self.unauthenticated, w))
        if self.per_ip:
            w = self.window
            key = f"{self.prefix}:ip:{self._ip(client_ip)}:{w}"
            limits.append(Limit("ip", key, self.per_ip, w))
        return limits


class RateLimiter:
    def __init__(
        self,
        redis: Any,
        *,
        policies: Policies,
        fail_open: bool,
        timeout: float = 1.0,
        health: RedisHealth | None = None,
    ) -> None:
        self._script = redis.register_script(_SCRIPT)
        self._give_back = redis.register_script(_GIVE_BACK)
        self.policies = policies
        self._fail_open = fail_open
        self._timeout = timeout
        self._health = health

    def decision(self, limits: Sequence[Limit], raw: Sequence[Any]) -> Decision:
        """The decision from the script's first four results (Redis answered)."""
        if self._health is not None:
            self._health.answered()
        allowed, remaining, reset_ms, which = raw[0], raw[1], raw[2], raw[3]
        lim = limits[int(which) - 1]
        reset = -(-int(reset_ms) // 1000)  # ceil
        remaining = max(0, int(remaining))
        return Decision(bool(allowed), lim.limit, remaining, reset, lim.window, name=lim.name)

    def unavailable(self, limits: Sequence[Limit], exc: BaseException) -> Decision:
        """Redis failed: a pass (fail open) or RateLimiterUnavailableError (fail closed).

        Logged once per outage and counted per request by the health tracker (without one,
        as in unit tests, logged per call)."""
        if self._health is not None:
            self._health.failed("ratelimit", exc)
        else:
            log.warning(
                "rate limiter cannot reach redis",
                extra={"fields": {"fail_open": self._fail_open, "error": type(exc).__name__}},
            )
        if not self._fail_open:
            raise RateLimiterUnavailableError from exc
        lim = limits[0]
        return Decision(True, lim.limit, lim.limit, lim.window, lim.window, True, name=lim.name)

    async def hit(self, limits: Sequence[Limit]) -> Decision | None:
        """Count one request against ``limits``; None when there are none."""
        if not limits:
            return None
        keys, args = limit_args(limits)
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            return self.unavailable(limits, exc)
        decision = self.decision(limits, raw)
        if decision.allowed and len(raw) > 4:
            decision = dataclasses.replace(decision, counted_at_ms=int(raw[4]))
        return decision

    async def give_back(self, limits: Sequence[Limit], decision: Decision) -> None:
        """Take back the count ``hit`` made with ``decision`` from each of ``limits`` (in the
        windows it was counted in; a count since expired is not taken twice): for a
        connection refused after it was counted, for a reason that is no fault of its
        client's rate. Nothing when nothing was counted. Best effort: a Redis that does not
        answer is logged, and the count stays until its window ends."""
        if decision.counted_at_ms is None or not limits:
            return
        keys = [f"{lim.key}:{decision.counted_at_ms // (lim.window * 1000)}" for lim in limits]
        try:
            async with asyncio.timeout(self._timeout):
                await self._give_back(keys=keys)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "a count could not be given back",
                extra={
                    "fields": {"limits": [lim.name for lim in limits], "error": type(exc).__name__}
                },
            )
