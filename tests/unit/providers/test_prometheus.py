"""The Prometheus provider against Prometheus's documented HTTP API answers (httpx
MockTransport): values and series come through, and every failure has its type and reason."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from controllers.providers.metrics import (
    MetricsEmptyError,
    MetricsMalformedError,
    MetricsUnreachableError,
)
from controllers.providers.prometheus import MAX_POINTS, PrometheusProvider, range_step


def provider(answer: Any, status: int = 200) -> PrometheusProvider:
    def handle(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, str):
            return httpx.Response(status, text=answer)
        return httpx.Response(status, json=answer)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return PrometheusProvider("http://prom:9090/", client=client)


def ok(kind: str, result: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": kind, "result": result}}


async def test_instant_vector_and_scalar() -> None:
    vec = ok("vector", [{"metric": {}, "value": [1700000000.5, "42.5"]}])
    assert await provider(vec).query("sum(x)", at=1700000000) == 42.5
    assert await provider(ok("scalar", [1700000000, "3"])).query("3", at=1) == 3.0


async def test_range_drops_nan_gaps() -> None:
    values = [[100, "1"], [160, "NaN"], [220, "3"]]
    samples = await provider(ok("matrix", [{"metric": {}, "values": values}])).query_range(
        "x", start=100, end=220, step=60
    )
    assert samples.timestamps.tolist() == [100.0, 220.0]
    assert np.array_equal(samples.values, [1.0, 3.0])
    assert samples.span == 120


@pytest.mark.parametrize(
    ("answer", "status", "error", "says"),
    [
        (httpx.ConnectError("refused"), 200, MetricsUnreachableError, "unreachable"),
        ({"status": "error"}, 503, MetricsUnreachableError, "HTTP 503"),
        ("busy", 429, MetricsUnreachableError, "HTTP 429"),
        (ok("vector", []), 200, MetricsEmptyError, "matched no series"),
        (ok("vector", [{"metric": {}, "value": [1, "NaN"]}]), 200, MetricsEmptyError, "NaN"),
        (ok("vector", [{"metric": {"a": "1"}, "value": [1, "1"]},
                       {"metric": {"a": "2"}, "value": [1, "2"]}]), 200,
         MetricsMalformedError, "returned 2 series; expected one"),
        ({"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}, 400,
         MetricsMalformedError, "(bad_data): parse error at char 4"),
        ("<html>proxy</html>", 200, MetricsMalformedError, "not JSON"),
        (ok("matrix", []), 200, MetricsMalformedError, "expected a vector or scalar"),
        (ok("vector", [{"metric": {}, "value": "x"}]), 200, MetricsMalformedError,
         "expected [time, value]"),
    ],
)  # fmt: skip
async def test_failures_are_typed_with_a_reason(
    answer: Any, status: int, error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as caught:
        await provider(answer, status).query("sum(x)", at=1)
    assert says in str(caught.value)
    assert caught.value.reason == error.__name__.removesuffix("Error")  # type: ignore[attr-defined]


async def test_a_range_with_too_many_points_is_refused_before_asking() -> None:
    with pytest.raises(ValueError, match="under 11000 points"):
        await provider(ok("matrix", [])).query_range("x", start=0, end=MAX_POINTS * 60, step=60)


def test_the_history_step_keeps_a_range_under_the_limit() -> None:
    assert range_step(14 * 86400) == 360  # 14 days near 4000 points, whole minutes
    assert range_step(3600) == 60
    assert 14 * 86400 / range_step(14 * 86400, points=20_000) < MAX_POINTS
