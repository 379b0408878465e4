"""Load metrics from Google Cloud Monitoring (`google-cloud-monitoring`, MetricService
`ListTimeSeries` over gRPC), behind the same `MetricsProvider` contract as Prometheus.

A query here is a Monitoring filter (`run_filter` builds one for a Cloud Run service). Series
are aligned per `step` (at least 60 s, the API's smallest alignment period) with `ALIGN_RATE`
for DELTA / CUMULATIVE counters (`*_count` metric types, requests per second) and `ALIGN_MEAN`
otherwise, then summed across series (`REDUCE_SUM`), so one series comes back. A DELTA
DISTRIBUTION metric (`run.googleapis.com/request_latencies`) is read with a `statistic`
(`for_statistic`): `mean` aligns with `ALIGN_DELTA` and merges the distributions of every
series (`REDUCE_SUM`), the value being the merged distribution's mean (a period that counted
nothing is NaN, dropped); `p50` / `p95` / `p99` align with `ALIGN_PERCENTILE_xx` and keep the
worst series (`REDUCE_MAX`). `count` (a Rollout's proportion metric: events per step, not per
second) aligns a counter with `ALIGN_DELTA`, the number counted in each period, summed across
series (`REDUCE_SUM`); of a distribution, the number of values it counted. Errors are typed
as for Prometheus: unreachable (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
transport), empty (no point), malformed (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED: the
filter or the project is wrong).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from google.api_core import exceptions as gexc
from google.api_core.retry import AsyncRetry, if_exception_type
from google.cloud import monitoring_v3
from google.protobuf import duration_pb2, timestamp_pb2

from controllers.metrics import backend_call
from controllers.providers.metrics import (
    MetricsEmptyError,
    MetricsMalformedError,
    MetricsProvider,
    MetricsUnreachableError,
    Samples,
)

__all__ = ["COUNT", "STATISTICS", "CloudMonitoringProvider", "run_filter"]

_UNREACHABLE = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.RetryError,
)
MIN_ALIGNMENT_SECONDS = 60  # the API refuses a shorter alignment period
LOOKBACK_STEPS = 5  # an instant value is the newest aligned point of the last few steps
INSTANT_STEP = 60.0


def run_filter(metric_type: str, *, service: str) -> str:
    """A Monitoring filter for `metric_type` of one Cloud Run service."""
    if not re.fullmatch(r"[A-Za-z0-9_./-]+", metric_type):
        raise ValueError(
            f"metric_type: expected a metric type such as "
            f"run.googleapis.com/request_count, got {metric_type!r}"
        )
    return (
        f'metric.type = "{metric_type}" AND resource.type = "cloud_run_revision" '
        f'AND resource.labels.service_name = "{service}"'
    )


_Aligner = monitoring_v3.Aggregation.Aligner
_Reducer = monitoring_v3.Aggregation.Reducer
STATISTICS: dict[str, tuple[Any, Any]] = {
    "mean": (_Aligner.ALIGN_DELTA, _Reducer.REDUCE_SUM),
    "p50": (_Aligner.ALIGN_PERCENTILE_50, _Reducer.REDUCE_MAX),
    "p95": (_Aligner.ALIGN_PERCENTILE_95, _Reducer.REDUCE_MAX),
    "p99": (_Aligner.ALIGN_PERCENTILE_99, _Reducer.REDUCE_MAX),
}
"""Per-series aligner and cross-series reducer of each statistic of a distribution metric."""
COUNT = "count"
"""The aggregation counting events per aligned period (a counter's delta, summed)."""
_AGGREGATIONS = {**STATISTICS, COUNT: (_Aligner.ALIGN_DELTA, _Reducer.REDUCE_SUM)}


def _aggregation(query: str, statistic: str | None) -> tuple[Any, Any]:
    """(aligner, reducer): the statistic's (or `count`'s), else ALIGN_RATE for a counter
    (`*_count`) and ALIGN_MEAN otherwise, summed across series."""
    if statistic is not None:
        if statistic not in _AGGREGATIONS:
            raise ValueError(
                f"statistic: expected one of {sorted(_AGGREGATIONS)}, got {statistic!r}"
            )
        return _AGGREGATIONS[statistic]
    kind = re.search(r'metric\.type = "([^"]+)"', query)
    counter = kind is not None and kind.group(1).endswith("_count")
    return (_Aligner.ALIGN_RATE if counter else _Aligner.ALIGN_MEAN), _Reducer.REDUCE_SUM


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


class CloudMonitoringProvider:
    """One project's metrics; `client` may be injected (tests pass one on a fake's channel)."""

    def __init__(
        self,
        project: str,
        *,
        client: Any | None = None,
        api_endpoint: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.project = project
        self._timeout = timeout
        # The client's default retries UNAVAILABLE for 90 s whatever the timeout; a sync
        # must not wait longer than one query's timeout, retries included.
        self._retry = AsyncRetry(
            predicate=if_exception_type(gexc.ServiceUnavailable),
            initial=0.1,
            maximum=1.0,
            multiplier=1.3,
            timeout=timeout,
        )
        if client is None:
            client = self._client(api_endpoint)
        self._client_ = client

    @staticmethod
    def _client(endpoint: str | None) -> Any:
        if endpoint is None:
            return monitoring_v3.MetricServiceAsyncClient()
        import grpc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.monitoring_v3.services.metric_service.transports import (
            MetricServiceGrpcAsyncIOTransport,
        )

        channel = grpc.aio.insecure_channel(endpoint)
        transport = MetricServiceGrpcAsyncIOTransport(
            channel=channel,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
        return monitoring_v3.MetricServiceAsyncClient(transport=transport)

    async def query(self, query: str, *, at: float) -> float:
        step = INSTANT_STEP
        samples = await self.query_range(query, start=at - LOOKBACK_STEPS * step, end=at, step=step)
        return float(samples.values[-1])

    async def query_range(
        self, query: str, *, start: float, end: float, step: float, statistic: str | None = None
    ) -> Samples:
        if not (end > start and step >= 1):
            raise ValueError(
                f"query_range: need end > start and step >= 1 s, got {start}..{end} step {step}"
            )
        aligner, reducer = _aggregation(query, statistic)
        period = max(int(step), MIN_ALIGNMENT_SECONDS)
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self.project}",
            filter=query,
            interval=monitoring_v3.TimeInterval(
                start_time=_timestamp(start), end_time=_timestamp(end)
            ),
            aggregation=monitoring_v3.Aggregation(
                alignment_period=duration_pb2.Duration(seconds=period),
                per_series_aligner=aligner,
                cross_series_reducer=reducer,
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        with backend_call("cloudmonitoring", "list_time_series"):
            series = await self._list(request)
        return _samples(series, query, count=statistic == COUNT)

    def for_statistic(self, statistic: str | None) -> MetricsProvider:
        """This provider reading distribution metrics as `statistic`, or counting events per
        step with `count` (None: as it is)."""
        return self if statistic is None else _Statistic(self, statistic)

    async def _list(self, request: monitoring_v3.ListTimeSeriesRequest) -> list[Any]:
        try:
            pager = await self._client_.list_time_series(
                request=request, retry=self._retry, timeout=self._timeout
            )
            return [s async for s in pager]
        except _UNREACHABLE as exc:
            raise MetricsUnreachableError(f"Cloud Monitoring unreachable: {exc.message}") from exc
        except gexc.GoogleAPICallError as exc:
            raise MetricsMalformedError(
                f"Cloud Monitoring refused the query: {exc.message}"
            ) from exc


def _identity(series: Any) -> tuple[Any, ...]:
    """What names one series: its metric and resource types and labels."""
    metric, resource = series.metric, series.resource
    return (
        metric.type,
        tuple(sorted(metric.labels.items())),
        resource.type,
        tuple(sorted(resource.labels.items())),
    )


def _samples(series: list[Any], query: str, *, count: bool = False) -> Samples:
    """The one series' points, oldest first (`count`: a distribution's count, not its mean).
    With the FULL view a page holds at most `page_size` points, so a long series comes back
    split over pages: parts with the same identity are one series."""
    if not series:
        raise MetricsEmptyError(f"filter {query!r} matched no time series")
    parts: dict[tuple[Any, ...], list[Any]] = {}
    for s in series:
        parts.setdefault(_identity(s), []).extend(s.points)
    if len(parts) > 1:
        raise MetricsMalformedError(
            f"filter {query!r} returned {len(parts)} series after REDUCE_SUM; expected one"
        )
    points = [_point(p, query, count=count) for p in next(iter(parts.values()))]
    if not points:
        raise MetricsEmptyError(f"filter {query!r}: the series has no point in the range")
    arr = np.asarray(sorted(points), dtype=np.float64)
    arr = arr[np.isfinite(arr[:, 1])]
    if arr.size == 0:
        raise MetricsEmptyError(f"filter {query!r}: no finite point in the range")
    return Samples(timestamps=arr[:, 0].copy(), values=arr[:, 1].copy())


def _point(point: Any, query: str, *, count: bool = False) -> tuple[float, float]:
    """(end time in seconds, value) of one numeric point; a distribution's mean (NaN when it
    counted nothing), or with `count` how many values it counted."""
    end = point.interval.end_time
    seconds = end.timestamp() if hasattr(end, "timestamp") else end.seconds + end.nanos / 1e9
    kind = point.value._pb.WhichOneof("value")
    if kind == "distribution_value":
        dist = point.value.distribution_value
        if count:
            return float(seconds), float(dist.count)
        return float(seconds), (float(dist.mean) if dist.count > 0 else float("nan"))
    if kind not in ("double_value", "int64_value"):
        raise MetricsMalformedError(f"filter {query!r}: a {kind} point is not a number")
    return float(seconds), float(getattr(point.value, kind))


class _Statistic:
    """A provider's view reading every query with one statistic."""

    def __init__(self, provider: CloudMonitoringProvider, statistic: str) -> None:
        _aggregation("", statistic)  # a bad statistic fails here, not at the first query
        self.provider, self.statistic = provider, statistic

    async def query(self, query: str, *, at: float) -> float:
        step = INSTANT_STEP
        samples = await self.query_range(query, start=at - LOOKBACK_STEPS * step, end=at, step=step)
        return float(samples.values[-1])

    async def query_range(self, query: str, *, start: float, end: float, step: float) -> Samples:
        return await self.provider.query_range(
            query, start=start, end=end, step=step, statistic=self.statistic
        )
