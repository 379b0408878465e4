"""Redis outages as the gateway's requests meet them: logged once, counted always.

Every request makes one Redis call (rate limits and cache lookup, services.gateway.gate), so
an outage would otherwise write one warning per request. :class:`RedisHealth` turns the
calls' outcomes into two log lines per outage: a warning when the first call fails, saying
what the gateway does meanwhile (``XYNERGY_GATEWAY_RATE_LIMIT_FAIL_OPEN``: requests pass
unchecked, or get 503; the cache is bypassed either way), and a warning when a call succeeds
again, with how long it lasted and how many requests it decided. Prometheus gets
``xynergy_gateway_redis_up``, ``xynergy_gateway_redis_outages_total`` and, per request decided
without Redis, ``xynergy_gateway_redis_fallbacks_total{component, mode}``.

The state is per worker process and lives in memory: an outage is what this worker saw.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from services.gateway.metrics import GatewayMetrics

__all__ = ["RedisHealth"]

log = logging.getLogger("xynergy.gateway.redis")


class RedisHealth:
    def __init__(
        self,
        *,
        fail_open: bool,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fail_open = fail_open
        self._metrics = metrics
        self._clock = clock
        self._down_since: float | None = None
        self._decided = 0
        metrics.redis_up.set(1)

    @property
    def mode(self) -> str:
        """What rate limiting does without Redis: ``fail_open`` or ``fail_closed``."""
        return "fail_open" if self.fail_open else "fail_closed"

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, component: str, exc: BaseException, *, mode: str | None = None) -> None:
        """A call of ``component`` (ratelimit, cache) failed; ``mode`` is what was done
        about it (the rate-limit setting unless given, e.g. ``bypass`` for the cache)."""
        self._metrics.redis_fallbacks.labels(component, mode or self.mode).inc()
        self._decided += 1
        if self._down_since is not None:
            return
        self._down_since = self._clock()
        self._metrics.redis_up.set(0)
        self._metrics.redis_outages.inc()
        action = "requests pass unchecked" if self.fail_open else "requests get 503"
        log.warning(
            "redis unreachable: rate limits %s (%s), cache bypassed until it answers",
            self.mode.replace("_", " "),
            action,
            extra={
                "fields": {"mode": self.mode, "component": component, "error": type(exc).__name__}
            },
        )

    def answered(self) -> None:
        """A call succeeded: ends the outage, if there was one."""
        if self._down_since is None:
            return
        seconds = self._clock() - self._down_since
        self._down_since = None
        self._metrics.redis_up.set(1)
        log.warning(
            "redis reachable again after %.1f s; %d calls were decided without it",
            seconds,
            self._decided,
            extra={"fields": {"mode": self.mode, "seconds": round(seconds, 3)}},
        )
        self._decided = 0
