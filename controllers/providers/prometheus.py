"""Load metrics from Prometheus's HTTP API, and the contract every metric provider keeps.

`PrometheusProvider.query_range` reads history (`/api/v1/query_range`), `query` the value now
(`/api/v1/query`). A query must yield one series: several are refused (wrap the query in
`sum()`), not silently added. Failures are typed so a ScalingPolicy can say what went wrong
and hold its instances: `MetricsUnreachableError` (connection, timeout, HTTP 5xx/429),
`MetricsEmptyError` (no series, or no finite sample) and `MetricsMalformedError` (a bad
query, an error answer, a body that is not what the API documents). All three are
transient (the next sync tries again) and carry a CamelCase `reason`.

The error types, `Samples` and the `MetricsProvider` protocol live in `metrics` (shared with
`cloudmonitoring`) and are re-exported here.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np

from controllers.metrics import backend_call
from controllers.providers.metrics import (
    MetricsEmptyError,
    MetricsError,
    MetricsMalformedError,
    MetricsProvider,
    MetricsUnreachableError,
    Samples,
)

__all__ = [
    "MetricsEmptyError",
    "MetricsError",
    "MetricsMalformedError",
    "MetricsProvider",
    "MetricsUnreachableError",
    "PrometheusProvider",
    "Samples",
    "range_step",
]

MAX_POINTS = 11_000  # Prometheus refuses a range query with more points per series


def range_step(seconds: float, *, minimum: float = 60.0, points: int = 4000) -> float:
    """A step (a whole number of `minimum`s) that keeps a range of `seconds` near `points`
    points and always under Prometheus's per-query limit."""
    step = max(minimum, math.ceil(seconds / points / minimum) * minimum)
    while seconds / step >= MAX_POINTS:
        step += minimum
    return float(step)


class PrometheusProvider:
    """One Prometheus server (`base_url`); `client` may be shared by several providers."""

    def __init__(
        self, base_url: str, *, client: httpx.AsyncClient | None = None, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout

    async def close(self) -> None:
        await self._client.aclose()

    async def query(self, query: str, *, at: float) -> float:
        data = await self._get("query", {"query": query, "time": f"{at:.3f}"})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return _finite_value(result, query)
        if kind != "vector" or not isinstance(result, list):
            raise MetricsMalformedError(
                f"query {query!r}: expected a vector or scalar, got {kind!r}"
            )
        _one_series(result, query)
        return _finite_value(result[0].get("value"), query)

    async def query_range(self, query: str, *, start: float, end: float, step: float) -> Samples:
        if not (end > start and step > 0) or (end - start) / step >= MAX_POINTS:
            raise ValueError(
                f"query_range: need end > start, step > 0 and under {MAX_POINTS} points, "
                f"got start={start}, end={end}, step={step}"
            )
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
        data = await self._get("query_range", params)
        result = data.get("result")
        if data.get("resultType") != "matrix" or not isinstance(result, list):
            raise MetricsMalformedError(f"query {query!r}: expected a matrix from query_range")
        _one_series(result, query)
        return _samples(result[0].get("values"), query)

    async def _get(self, endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/api/v1/{endpoint}"
        with backend_call("prometheus", endpoint):
            try:
                resp = await self._client.get(url, params=params, timeout=self._timeout)
            except httpx.HTTPError as exc:
                raise MetricsUnreachableError(
                    f"Prometheus at {self.base_url} unreachable: {type(exc).__name__}: {exc}"
                ) from exc
            return _data(resp, self.base_url)


def _data(resp: httpx.Response, base_url: str) -> dict[str, Any]:
    """The `data` of a Prometheus API answer, or the typed error it amounts to."""
    if resp.status_code >= 500 or resp.status_code == 429:
        raise MetricsUnreachableError(f"Prometheus at {base_url} answered HTTP {resp.status_code}")
    try:
        body = resp.json()
    except ValueError as exc:
        raise MetricsMalformedError(
            f"Prometheus at {base_url} answered HTTP {resp.status_code} with a body that is not "
            "JSON"
        ) from exc
    if not isinstance(body, dict):
        raise MetricsMalformedError(f"Prometheus at {base_url}: expected a JSON object")
    if body.get("status") != "success":
        kind, error = body.get("errorType", "error"), body.get("error", "no message")
        raise MetricsMalformedError(f"Prometheus refused the query ({kind}): {error}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise MetricsMalformedError(f"Prometheus at {base_url}: answer without data")
    return data


def _one_series(result: list[Any], query: str) -> None:
    if not result:
        raise MetricsEmptyError(f"query {query!r} matched no series")
    if len(result) > 1:
        raise MetricsMalformedError(
            f"query {query!r} returned {len(result)} series; expected one (aggregate it, e.g. "
            "with sum())"
        )
    if not isinstance(result[0], dict):
        raise MetricsMalformedError(f"query {query!r}: a series is not an object")


def _finite_value(pair: Any, query: str) -> float:
    try:
        value = float(pair[1])
    except (TypeError, ValueError, IndexError) as exc:
        raise MetricsMalformedError(
            f"query {query!r}: expected [time, value], got {pair!r}"
        ) from exc
    if not math.isfinite(value):
        raise MetricsEmptyError(f"query {query!r} is {pair[1]} now")
    return value


def _samples(values: Any, query: str) -> Samples:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as exc:
        raise MetricsMalformedError(f"query {query!r}: expected [[time, value], ...]") from exc
    arr = arr[np.isfinite(arr[:, 1])]
    if arr.size == 0:
        raise MetricsEmptyError(f"query {query!r} has no finite sample in the range")
    return Samples(timestamps=arr[:, 0].copy(), values=arr[:, 1].copy())
