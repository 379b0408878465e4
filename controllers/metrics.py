"""Prometheus metrics of the operator: reconciles by kind and result, backend call latency and
errors. Served by `prometheus_client` when XYNERGY_METRICS_PORT is set."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

__all__ = [
    "BACKEND_CALLS",
    "BACKEND_ERRORS",
    "BACKEND_LATENCY",
    "RECONCILE_DURATION",
    "RECONCILE_TOTAL",
    "backend_call",
]

RECONCILE_TOTAL = Counter(
    "xynergy_reconcile_total", "Reconciles by kind and result.", ["kind", "result"]
)
RECONCILE_DURATION = Histogram(
    "xynergy_reconcile_duration_seconds", "Time one reconcile takes.", ["kind", "result"]
)
BACKEND_CALLS = Counter("xynergy_backend_calls_total", "Backend API calls.", ["backend", "method"])
BACKEND_LATENCY = Histogram(
    "xynergy_backend_call_duration_seconds", "Backend API call latency.", ["backend", "method"]
)
BACKEND_ERRORS = Counter(
    "xynergy_backend_errors_total", "Backend API errors by reason.", ["backend", "method", "reason"]
)


@contextmanager
def backend_call(backend: str, method: str) -> Iterator[None]:
    """Count and time one backend call; errors are counted by exception type."""
    start = time.perf_counter()
    BACKEND_CALLS.labels(backend, method).inc()
    try:
        yield
    except Exception as exc:
        BACKEND_ERRORS.labels(backend, method, getattr(exc, "reason", type(exc).__name__)).inc()
        raise
    finally:
        BACKEND_LATENCY.labels(backend, method).observe(time.perf_counter() - start)
