"""Prometheus metrics of the gateway, in a registry of its own per app instance.

Requests routed to a known revision (a Rollout's stable and canary upstreams) are also counted
and timed by revision, so a rollout's analysis can compare the two revisions."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.gateway.breaker import BreakerState
from services.gateway.routing import chosen_revision

__all__ = ["GatewayMetrics"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "xynergy_gateway_requests_total",
            "Requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "xynergy_gateway_request_duration_seconds",
            "Time from request to response headers, by route.",
            ["route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.revision_requests = Counter(
            "xynergy_gateway_revision_requests_total",
            "Requests routed to a revision (rollouts), by route, revision and status.",
            ["route", "revision", "status"],
            registry=r,
        )
        self.revision_latency = Histogram(
            "xynergy_gateway_revision_request_duration_seconds",
            "Time from request to response headers, by route and upstream revision.",
            ["route", "revision"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "xynergy_gateway_cache_requests_total",
            "Cache lookups by result (hit, miss, error).",
            ["result"],
            registry=r,
        )
        self.cache_hit_ratio = Gauge(
            "xynergy_gateway_cache_hit_ratio", "Hits over hits plus misses since start.", registry=r
        )
        # computed when scraped, not set on every request
        self.cache_hit_ratio.set_function(lambda: self._hits / max(1, self._hits + self._misses))
        self.breaker_state = Gauge(
            "xynergy_gateway_breaker_state",
            "Circuit breaker state per upstream: 0 closed, 1 open, 2 half-open.",
            ["upstream"],
            registry=r,
        )
        self.rate_limited = Counter(
            "xynergy_gateway_rate_limited_total",
            "Requests refused with 429.",
            ["route"],
            registry=r,
        )
        self._redis_metrics(r)
        self.upstream_retries = Counter(
            "xynergy_gateway_upstream_retries_total",
            "Retried upstream calls.",
            ["route"],
            registry=r,
        )
        self.routes = Gauge("xynergy_gateway_routes", "Routes in the current table.", registry=r)
        self.stream_clients = Gauge(
            "xynergy_gateway_stream_clients", "Connected socket.io clients.", registry=r
        )
        self._hits = 0
        self._misses = 0
        # Labelled children, looked up once: ``labels()`` takes a lock and builds a tuple key
        # on every call, which showed up on the per-request path.
        self._done: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._cache_children = {r: self.cache.labels(r) for r in ("hit", "miss", "error")}

    def _redis_metrics(self, r: CollectorRegistry) -> None:
        """Redis as the gateway sees it: errors, up/down, outages, requests decided without it."""
        self.redis_errors = Counter(
            "xynergy_gateway_redis_errors_total",
            "Redis failures by component (ratelimit, cache, stream).",
            ["component"],
            registry=r,
        )
        self.redis_up = Gauge(
            "xynergy_gateway_redis_up",
            "1 while this worker's Redis calls succeed, 0 from the first failure to the next "
            "success (services.gateway.redishealth).",
            registry=r,
        )
        self.redis_outages = Counter(
            "xynergy_gateway_redis_outages_total",
            "Redis outages seen by this worker (each logged once, at its start and end).",
            registry=r,
        )
        self.redis_fallbacks = Counter(
            "xynergy_gateway_redis_fallbacks_total",
            "Requests decided without Redis, by component and what was done "
            "(fail_open, fail_closed, bypass).",
            ["component", "mode"],
            registry=r,
        )

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count a finished request and observe its duration."""
        key = (route, method, status)
        children = self._done.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
            )
            if len(self._done) < 10_000:  # bounded: methods and statuses come from clients
                self._done[key] = children
        children[0].inc()
        children[1].observe(seconds)
        revision = chosen_revision()
        if revision:
            self.revision_requests.labels(route, revision, str(status)).inc()
            self.revision_latency.labels(route, revision).observe(seconds)

    def cache_result(self, result: str) -> None:
        child = self._cache_children.get(result)
        (child if child is not None else self.cache.labels(result)).inc()
        if result == "hit":
            self._hits += 1
        elif result == "miss":
            self._misses += 1

    def breaker_changed(self, upstream: str, state: BreakerState) -> None:
        self.breaker_state.labels(upstream).set(int(state))
